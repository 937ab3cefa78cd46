"""adapter_pruning.data: normalisation on real mirror rows, split rules, caps, hub path, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from adapter_pruning import data
from adapter_pruning.data import (
    MELD_CONTEXT_SEPARATOR,
    SPLITS,
    TASKS,
    CorruptDataError,
    DataError,
    TaskSpec,
    load_split,
    read_prepared,
    verify_mirror,
    write_prepared,
)
from adapter_pruning.io import CorruptFileError, sha256_file


def raw(shared_data: Path, task: str, split: str) -> pl.DataFrame:
    return pl.read_parquet(shared_data / task / f"{split}.parquet")


def make_mirror(root: Path, frames: dict[str, pl.DataFrame], *, sums: bool = True) -> Path:
    """A small mirror ``root/<task>/<split>.parquet`` (+ SHA256SUMS) from ``{"task/split": df}``."""
    for key, df in frames.items():
        path = root / f"{key}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path)
    if sums:
        lines = [f"{sha256_file(root / f'{k}.parquet')}  {k}.parquet" for k in sorted(frames)]
        (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


def check_schema(df: pl.DataFrame) -> None:
    assert df.columns == ["id", "text", "text_pair", "label"]
    assert df.schema == {"id": pl.String, "text": pl.String, "text_pair": pl.String, "label": pl.Int64}
    assert df["id"].n_unique() == df.height


def test_registry():
    assert set(TASKS) == {"meld", "snli", "rotten_tomatoes", "imdb", "trec"}
    assert SPLITS == ("train", "validation", "test")
    assert {t: s.num_labels for t, s in TASKS.items()} == {
        "meld": 7,
        "snli": 3,
        "rotten_tomatoes": 2,
        "imdb": 2,
        "trec": 6,
    }
    assert {t for t, s in TASKS.items() if s.metric == "macro_f1"} == {"meld"}
    assert {t for t, s in TASKS.items() if s.pair} == {"meld", "snli"}
    for task_spec in TASKS.values():
        assert len(task_spec.label_names) == task_spec.num_labels
        assert task_spec.source
    assert TASKS["trec"].hf_id == "CogComp/trec" and TASKS["meld"].hf_id is None
    assert TASKS["imdb"].mirror_splits == ("train", "test") and TASKS["trec"].mirror_splits == SPLITS
    assert TASKS["imdb"].source_split("validation", "mirror") == "train"
    assert TASKS["trec"].source_split("validation", "mirror") == "validation"
    assert TASKS["trec"].source_split("validation", "hub") == "train"
    assert TASKS["meld"].hub_location("validation") == data.MELD_CSV_URLS["validation"]


def test_a_new_task_is_one_registry_entry(shared_data, tmp_path, monkeypatch):
    """A task described only by its registry entry loads like the built-in ones."""
    src = raw(shared_data, "snli", "test").head(30).rename({"premise": "question", "hypothesis": "answer"})
    entry = TaskSpec(
        name="qa",
        num_labels=3,
        metric="macro_f1",
        pair=True,
        hf_id="example/qa",
        label_names=("a", "b", "c"),
        columns=(("question", "str"), ("answer", "str"), ("label", "int")),
        inputs=lambda rows: (rows["question"], rows["answer"]),
        keys=lambda rows, split, source: [f"{split}{i}" for i in range(rows.height)],
    )
    monkeypatch.setitem(TASKS, "qa", entry)
    mirror = make_mirror(tmp_path, {f"qa/{split}": src for split in SPLITS})
    verify_mirror(mirror, "qa")
    df = load_split("qa", "test", mirror=mirror)
    check_schema(df)
    assert df["id"].to_list() == [f"qa-test-test{i}" for i in range(30)]
    assert df["text_pair"].to_list() == src["answer"].to_list()
    assert df["text"].to_list() == src["question"].to_list() and df["label"].to_list() == src["label"].to_list()
    write_prepared(df, tmp_path / "qa.parquet", "qa")
    assert read_prepared(tmp_path / "qa.parquet", "qa").equals(df)


def test_verify_real_mirror(shared_data):
    verify_mirror(shared_data)
    verify_mirror(shared_data, "trec")


def test_rotten_tomatoes_rows(shared_data):
    src = raw(shared_data, "rotten_tomatoes", "validation")
    df = load_split("rotten_tomatoes", "validation", mirror=shared_data)
    check_schema(df)
    assert df["text"].to_list() == src["text"].to_list()
    assert df["label"].to_list() == src["label"].to_list()
    assert df["text_pair"].null_count() == df.height
    assert df["id"][:2].to_list() == ["rotten_tomatoes-validation-0", "rotten_tomatoes-validation-1"]
    assert df.row(0)[1].startswith("compassionately explores the seemingly irreconcilable")


def test_trec_coarse_labels_and_original_positions(shared_data):
    train = load_split("trec", "train", mirror=shared_data)
    val = load_split("trec", "validation", mirror=shared_data)
    test = load_split("trec", "test", mirror=shared_data)
    for df in (train, val, test):
        check_schema(df)
    src = raw(shared_data, "trec", "validation")
    assert val["label"].to_list() == src["coarse_label"].to_list()
    assert val["text"].to_list() == src["text"].to_list()
    # Ids carry the row position in the original 5,452-row train file.
    expected = np.sort(np.random.default_rng(42).permutation(5452)[:500])
    assert [int(i.rsplit("-", 1)[1]) for i in val["id"]] == expected.tolist()
    positions = {int(i.rsplit("-", 1)[1]) for i in pl.concat([train, val])["id"]}
    assert positions == set(range(5452))
    # Line 8 (0-based) of train_5500.label is "DESC:def What are liver enzymes ?".
    assert val.row(0) == ("trec-validation-8", "What are liver enzymes ?", None, 2)
    assert test.height == 500 and train.height == 4952


def test_snli_pairs(shared_data):
    src = raw(shared_data, "snli", "test")
    df = load_split("snli", "test", mirror=shared_data)
    check_schema(df)
    assert df["text"].to_list() == src["premise"].to_list()
    assert df["text_pair"].to_list() == src["hypothesis"].to_list()
    assert df["label"].to_list() == src["label"].to_list()


def test_snli_drops_unlabelled_rows(shared_data, tmp_path):
    src = raw(shared_data, "snli", "validation").head(50)
    unlabelled = src.head(3).with_columns(label=pl.lit(-1, pl.Int64), hypothesis=pl.lit("no gold label"))
    noisy = pl.concat([src.head(10), unlabelled, src.tail(40)])  # the -1 rows sit at positions 10..12
    mirror = make_mirror(tmp_path, {"snli/validation": noisy})
    df = load_split("snli", "validation", mirror=mirror)
    assert df.height == 50
    assert "no gold label" not in df["text_pair"].to_list()
    assert df["label"].min() >= 0
    assert df["id"].to_list() == [f"snli-validation-{i}" for i in range(50)]
    assert df["text_pair"].to_list() == src["hypothesis"].to_list()


def test_meld_context_on_known_dialogue(shared_data):
    src = raw(shared_data, "meld", "validation")
    df = load_split("meld", "validation", mirror=shared_data)
    check_schema(df)
    assert df.height == src.height
    assert df["label"].to_list() == src["emotion_label"].to_list()
    assert df["text"].to_list() == src["Utterance"].to_list()
    dialogue = src.filter(pl.col("Dialogue_ID") == 1).sort("Utterance_ID")
    utt = dict(zip(dialogue["Utterance_ID"].to_list(), dialogue["Utterance"].to_list()))
    assert len(utt) == 16
    rows = {r["id"]: r for r in df.filter(pl.col("id").str.starts_with("meld-validation-1-")).to_dicts()}
    assert rows["meld-validation-1-0"]["text_pair"] == ""  # first utterance: no context
    assert rows["meld-validation-1-0"]["text"] == (
        "Or! Or, we could go to the bank, close our accounts and cut them off at the source."
    )
    assert rows["meld-validation-1-3"]["text_pair"] == MELD_CONTEXT_SEPARATOR.join([utt[2], utt[1], utt[0]])
    assert rows["meld-validation-1-3"]["text_pair"].startswith(
        "Aww, man, now we won’t be bank buddies! | You’re a genius!"
    )
    # Utterance 12: exactly the 7 previous ones (11 down to 5), most recent first.
    assert rows["meld-validation-1-12"]["text_pair"] == MELD_CONTEXT_SEPARATOR.join(utt[k] for k in range(11, 4, -1))
    assert rows["meld-validation-1-12"]["text"] == utt[12]


def test_meld_context_follows_utterance_ids_not_row_order(shared_data, tmp_path):
    src = raw(shared_data, "meld", "test").head(120)
    shuffled = src.sample(fraction=1.0, shuffle=True, seed=3)
    base = load_split("meld", "test", mirror=make_mirror(tmp_path / "a", {"meld/test": src}))
    moved = load_split("meld", "test", mirror=make_mirror(tmp_path / "b", {"meld/test": shuffled}))
    keys = shuffled.select("Dialogue_ID", "Utterance_ID").iter_rows()
    assert moved["id"].to_list() == [f"meld-test-{d}-{u}" for d, u in keys]
    assert moved.sort("id").equals(base.sort("id"))


def test_imdb_validation_is_deterministic_disjoint_and_order_free(shared_data, tmp_path):
    train = load_split("imdb", "train", mirror=shared_data)
    val = load_split("imdb", "validation", mirror=shared_data)
    check_schema(train)
    check_schema(val)
    assert train.height + val.height == 25000
    assert val["text"].n_unique() == data.IMDB_VALIDATION_SIZE == 2500
    distinct = val.unique("text")
    # Stratified in proportion to the distinct reviews per label (duplicates make them unequal).
    per_label = raw(shared_data, "imdb", "train").unique("text")["label"].value_counts().sort("label")["count"]
    expected = 2500 * per_label.to_numpy() / per_label.sum()
    got = distinct["label"].value_counts().sort("label")["count"].to_numpy()
    assert np.all(np.abs(got - expected) < 1) and got.tolist() == [1248, 1252]
    assert not set(val["id"]) & set(train["id"])
    assert not set(val["text"]) & set(train["text"])  # duplicated reviews never straddle the split
    assert load_split("imdb", "validation", mirror=shared_data).equals(val)
    # Same rule on a source with a different row order (the hub's order differs from the mirror's).
    shuffled = raw(shared_data, "imdb", "train").sample(fraction=1.0, shuffle=True, seed=7)
    mirror = make_mirror(tmp_path, {"imdb/train": shuffled}, sums=False)
    val2 = load_split("imdb", "validation", mirror=mirror)
    assert set(val2["id"]) == set(val["id"])
    assert val2.sort("id").equals(val.sort("id"))
    small = load_split("imdb", "validation", mirror=mirror, imdb_validation_size=100)
    assert small["text"].n_unique() == 100


def test_caps_are_stratified_seeded_and_keep_order(shared_data):
    full = load_split("trec", "train", mirror=shared_data)
    capped = load_split("trec", "train", mirror=shared_data, caps={"train": 100}, seed=0)
    assert capped.height == 100
    counts = full["label"].value_counts().sort("label")["count"].to_numpy()
    got = capped["label"].value_counts().sort("label")["count"].to_numpy()
    assert np.all(np.abs(got - 100 * counts / counts.sum()) < 1)  # largest-remainder allocation
    position = {i: k for k, i in enumerate(full["id"])}
    assert [position[i] for i in capped["id"]] == sorted(position[i] for i in capped["id"])
    assert load_split("trec", "train", mirror=shared_data, caps=100, seed=0).equals(capped)
    other = load_split("trec", "train", mirror=shared_data, caps=100, seed=1)
    assert set(other["id"]) != set(capped["id"])
    bigger = load_split("trec", "train", mirror=shared_data, caps=400, seed=0)
    assert len(set(capped["id"]) - set(bigger["id"])) <= 6  # nested up to allocation rounding
    assert load_split("trec", "test", mirror=shared_data, caps={"train": 10}).height == 500
    uncapped = load_split("trec", "test", mirror=shared_data)
    assert load_split("trec", "test", mirror=shared_data, caps=10_000).equals(uncapped)
    with pytest.raises(ValueError, match="positive integer"):
        load_split("trec", "test", mirror=shared_data, caps=0)
    with pytest.raises(ValueError, match="unknown split"):
        load_split("trec", "test", mirror=shared_data, caps={"dev": 10})


# ------------------------------------------------------------------ hub path (load_dataset faked)


def test_trec_hub_path_matches_mirror(shared_data, monkeypatch):
    import datasets

    train, val = raw(shared_data, "trec", "train"), raw(shared_data, "trec", "validation")
    is_val = np.zeros(5452, dtype=bool)
    is_val[np.random.default_rng(42).permutation(5452)[:500]] = True
    order = np.argsort(np.concatenate([np.flatnonzero(~is_val), np.flatnonzero(is_val)]), kind="stable")
    full = pl.concat([train, val])[order]  # the original train_5500.label order
    hub = {"train": full, "test": raw(shared_data, "trec", "test")}
    calls = []

    def fake_load_dataset(path, *args, split=None, revision=None, **kw):
        calls.append((path, split, revision))
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found trec.py")
        return datasets.Dataset.from_polars(hub[split])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    for split in SPLITS:
        assert load_split("trec", split).equals(load_split("trec", split, mirror=shared_data)), split
    assert calls[:2] == [("CogComp/trec", "train", None), ("CogComp/trec", "train", "refs/convert/parquet")]


def test_meld_snli_imdb_hub_paths_match_mirror(shared_data, monkeypatch, tmp_path):
    import datasets

    seen = []

    def fake_load_dataset(path, *args, split=None, data_files=None, **kw):
        seen.append((path, split, data_files))
        if path == "csv":  # the official MELD CSV columns, without the mirror's integer labels
            assert kw.get("keep_default_na") is False
            src = raw(shared_data, "meld", split).drop("emotion_label", "sentiment_label")
            return datasets.Dataset.from_polars(src)
        if path == "stanfordnlp/imdb":
            assert split == "train"  # validation is carved from the hub's train split
            return datasets.Dataset.from_polars(raw(shared_data, "imdb", "train").reverse())
        assert path == "stanfordnlp/snli"
        src = raw(shared_data, "snli", split)
        with_unlabelled = pl.concat([src.head(5).with_columns(label=pl.lit(-1, pl.Int64)), src])
        return datasets.Dataset.from_polars(with_unlabelled)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_split("meld", "validation").equals(load_split("meld", "validation", mirror=shared_data))
    assert seen[0][2] == {"validation": data.MELD_CSV_URLS["validation"]}
    assert seen[0][2]["validation"].endswith(f"/{data.MELD_COMMIT}/data/MELD/dev_sent_emo.csv")
    # A mirror without a folder for the task falls back to the hub.
    hub_snli = load_split("snli", "test", mirror=tmp_path)
    assert hub_snli.equals(load_split("snli", "test", mirror=shared_data))
    hub_imdb = load_split("imdb", "validation")
    assert hub_imdb.sort("id").equals(load_split("imdb", "validation", mirror=shared_data).sort("id"))


def test_offline_without_mirror_names_both_places(tmp_path):
    with pytest.raises(DataError) as err:
        load_split("rotten_tomatoes", "train", mirror=tmp_path)  # no rotten_tomatoes/ folder; hub offline
    msg = str(err.value)
    assert "rotten_tomatoes" in msg and str(tmp_path / "rotten_tomatoes") in msg
    assert "cornell-movie-review-data/rotten_tomatoes" in msg
    with pytest.raises(DataError, match=r"no mirror configured.*declare-lab/MELD"):
        load_split("meld", "test")


# ------------------------------------------------------------------ bad input


def test_checksum_mismatch_names_file(shared_data, tmp_path):
    src = raw(shared_data, "rotten_tomatoes", "test")
    mirror = make_mirror(tmp_path, {f"rotten_tomatoes/{split}": src for split in SPLITS})
    verify_mirror(mirror, "rotten_tomatoes")
    src.head(10).write_parquet(mirror / "rotten_tomatoes" / "test.parquet")  # content changed after SHA256SUMS
    target = str(mirror / "rotten_tomatoes" / "test.parquet")
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_split("rotten_tomatoes", "test", mirror=mirror)
    assert target in str(err.value)
    with pytest.raises(DataError, match="checksum mismatch"):
        verify_mirror(mirror, "rotten_tomatoes")


def test_missing_column_names_file_and_column(shared_data, tmp_path):
    src = raw(shared_data, "trec", "test").rename({"coarse_label": "coarse"})
    mirror = make_mirror(tmp_path, {"trec/test": src})
    with pytest.raises(DataError, match=r"missing column\(s\) \['coarse_label'\]") as err:
        load_split("trec", "test", mirror=mirror)
    assert str(mirror / "trec" / "test.parquet") in str(err.value)


def test_label_out_of_range_names_file(shared_data, tmp_path):
    src = raw(shared_data, "meld", "test").with_columns(
        emotion_label=pl.when(pl.int_range(pl.len()) == 5).then(7).otherwise(pl.col("emotion_label"))
    )
    mirror = make_mirror(tmp_path, {"meld/test": src})
    with pytest.raises(DataError, match=r"1 label\(s\) outside 0\.\.6") as err:
        load_split("meld", "test", mirror=mirror)
    assert str(mirror / "meld" / "test.parquet") in str(err.value) and "emotion_label" in str(err.value)


def test_unreadable_and_missing_files(shared_data, tmp_path):
    mirror = make_mirror(
        tmp_path, {"rotten_tomatoes/train": raw(shared_data, "rotten_tomatoes", "train").head(5)}, sums=False
    )
    (mirror / "rotten_tomatoes" / "test.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorruptDataError) as err:
        load_split("rotten_tomatoes", "test", mirror=mirror)
    assert isinstance(err.value, DataError) and isinstance(err.value, CorruptFileError)
    assert str(mirror / "rotten_tomatoes" / "test.parquet") in str(err.value)
    with pytest.raises(DataError, match="missing file") as err:
        load_split("rotten_tomatoes", "validation", mirror=mirror)
    assert str(mirror / "rotten_tomatoes" / "validation.parquet") in str(err.value)
    with pytest.raises(DataError, match="missing file"):
        verify_mirror(mirror, "rotten_tomatoes")
    with pytest.raises(DataError, match="unknown task"):
        load_split("sst2", "train", mirror=mirror)
    with pytest.raises(DataError, match="unknown split"):
        load_split("rotten_tomatoes", "dev", mirror=mirror)


def test_null_text_is_rejected(shared_data, tmp_path):
    src = raw(shared_data, "rotten_tomatoes", "test").with_columns(
        text=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("text"))
    )
    mirror = make_mirror(tmp_path, {"rotten_tomatoes/test": src}, sums=False)
    with pytest.raises(DataError, match=r"column 'text' has 1 null"):
        load_split("rotten_tomatoes", "test", mirror=mirror)


def test_prepared_roundtrip_and_validation(shared_data, tmp_path):
    df = load_split("snli", "validation", mirror=shared_data, caps=50)
    path = tmp_path / "snli" / "validation.parquet"
    write_prepared(df, path, "snli")
    assert read_prepared(path, "snli").equals(df)
    single = load_split("trec", "test", mirror=shared_data, caps=20)
    write_prepared(single, tmp_path / "trec.parquet", "trec")
    back = read_prepared(tmp_path / "trec.parquet", "trec")
    assert back.schema["text_pair"] == pl.String and back.equals(single)
    with pytest.raises(DataError, match="not a pair task"):
        read_prepared(path, "trec")
    with pytest.raises(DataError, match=r"outside 0\.\.1"):
        read_prepared(path, "rotten_tomatoes")  # SNLI has label 2
    df.drop("label").write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: missing column\(s\) \['label'\]"):
        read_prepared(tmp_path / "bad.parquet")
    (tmp_path / "trunc.parquet").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match="trunc.parquet"):
        read_prepared(tmp_path / "trunc.parquet")
    with pytest.raises(DataError, match="missing file"):
        read_prepared(tmp_path / "absent.parquet")
