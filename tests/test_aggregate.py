"""Aggregation and the paper's tables on synthetic results with known answers."""

from __future__ import annotations

import polars as pl
import pytest

from adapter_pruning import aggregate
from adapter_pruning.io import CorruptFileError, write_parquet
from adapter_pruning.results import COLUMNS, SCHEMA

PROV = {
    "device": "cpu",
    "device_name": "Xeon",
    "train_device": "cpu",
    "train_device_name": "Xeon",
    "torch": "2.13.0+cpu",
    "transformers": "4.57.6",
    "adapters": "1.3.0",
}
H100 = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}


def _rows(task, seed, scope, method, p, retained, val, test, n=1000):
    out = []
    for split, score in (("validation", val), ("test", test)):
        for metric, primary in (("accuracy", True), ("macro_f1", False)):
            out.append(
                {
                    "model": "m",
                    "task": task,
                    "seed": seed,
                    "scope": scope,
                    "method": method,
                    "p": float(p),
                    "retained": retained,
                    "n_params": n,
                    "n_pruned": round(n * (1 - retained)),
                    "split": split,
                    "metric": metric,
                    "score": score if primary else score / 2,
                    "primary": primary,
                    "jaccard_standard": None if method == "full" else (1.0 if method == "standard" else 0.9),
                    "pruned_outside_standard": None if method == "full" else (0.0 if method == "standard" else 0.1),
                    **PROV,
                }
            )
    return out


def _frame(rows):
    return pl.DataFrame(rows, schema=SCHEMA)


@pytest.fixture
def results():
    rows = []
    for seed, (fm, sv, st, tv, tt) in enumerate([(0.9, 0.6, 0.55, 0.7, 0.65), (0.8, 0.62, 0.5, 0.61, 0.6)]):
        rows += _rows("rt", seed, None, "full", 0, 1.0, fm, fm)
        rows += _rows("rt", seed, "CU", "standard", 90, 0.12, sv, st)
        rows += _rows("rt", seed, "CU", "tropical", 90, 0.12, tv, tt)
        rows += _rows("rt", seed, "CU", "standard", 50, 0.55, 0.8, 0.8)
        rows += _rows("rt", seed, "CU", "tropical", 50, 0.55, 0.8, 0.7)  # tie on validation
        rows += _rows("rt", seed, "CB", "tropical", 90, 0.15, 0.5, 0.4)
    return _frame(rows)


def test_collect_concatenates_and_checks(tmp_path, results):
    paths = []
    for i, part in enumerate(results.partition_by(["seed", "method"])):
        paths.append(tmp_path / f"{i}.parquet")
        write_parquet(part, paths[-1])
    out = aggregate.collect(paths, tmp_path / "results.parquet")
    assert out.height == results.height and list(out.columns) == list(COLUMNS)
    # the first rows are the full model's (scope null sorts first)
    assert out["method"][0] == "full"


def test_collect_rejects_corrupt_and_out_of_range(tmp_path, results):
    good = tmp_path / "good.parquet"
    write_parquet(results, good)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="broken.parquet"):
        aggregate.collect([good, broken], tmp_path / "r.parquet")
    bad = tmp_path / "bad.parquet"
    write_parquet(results.with_columns(pl.lit(87.9).alias("score")), bad)
    with pytest.raises(CorruptFileError, match="out-of-range"):
        aggregate.collect([bad], tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()
    with pytest.raises(ValueError, match="duplicate"):
        aggregate.collect([good, good], tmp_path / "r.parquet")


def test_table1_combined_and_seeds(results):
    t1 = aggregate.table1_frame(results, scope="CU")
    comb = {r["p"]: r for r in t1.filter(pl.col("row") == "Combined").iter_rows(named=True)}
    # p=90: seed0 validation favours tropical (0.7 > 0.6) -> test 0.65; seed1 favours standard (0.62 > 0.61) -> 0.5
    assert comb[90.0]["chosen"] == "tropical,standard"
    assert comb[90.0]["mean"] == pytest.approx((0.65 + 0.5) / 2)
    assert comb[90.0]["std"] == pytest.approx(pl.Series([0.65, 0.5]).std())
    # p=50: validation tie -> Standard
    assert comb[50.0]["chosen"] == "standard,standard" and comb[50.0]["mean"] == pytest.approx(0.8)
    fm = t1.filter(pl.col("row") == "FM")
    assert fm["mean"][0] == pytest.approx(0.85) and fm["n_seeds"][0] == 2
    trop = t1.filter(pl.col("row") == "Tropical", pl.col("p") == 90.0)
    assert trop["mean"][0] == pytest.approx(0.625)


def test_table_files(tmp_path, results):
    src = tmp_path / "results.parquet"
    write_parquet(results, src)
    t1 = {ext: tmp_path / f"table1.{ext}" for ext in ("md", "csv", "tex")}
    t2 = {ext: tmp_path / f"table2.{ext}" for ext in ("md", "csv", "tex")}
    aggregate.write_tables(src, t1, t2, table_scope="CU", table2_task="rt")
    md = t1["md"].read_text()
    # columns ordered by retained share, like the paper; percentages x100 with mean ± std
    assert md.index("12.0%") < md.index("55.0%")
    assert "62.50 ± 3.54" in md  # tropical p=90 over the two seeds
    assert "85.00 ± 7.07" in md  # FM
    tex = t1["tex"].read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex
    assert pl.read_csv(t1["csv"]).height == aggregate.table1_frame(results).height
    md2 = t2["md"].read_text()
    assert "T-CB" in md2 and "T-CU" in md2 and "S-CU" in md2 and "S-CB" not in md2


def test_table2_missing_task_says_so(tmp_path, results):
    src = tmp_path / "results.parquet"
    write_parquet(results, src)
    t = {ext: tmp_path / f"t.{ext}" for ext in ("md", "csv", "tex")}
    aggregate.write_tables(src, t, {k: tmp_path / f"u.{k}" for k in t}, table2_task="imdb")
    assert "No pruning results for task 'imdb'" in (tmp_path / "u.md").read_text()


def _write_parts(results, tmp_path, by=("seed", "method")):
    paths = []
    for i, part in enumerate(results.partition_by(list(by))):
        paths.append(tmp_path / f"{i}.parquet")
        write_parquet(part, paths[-1])
    return paths


def test_states_from_different_device_kinds_are_refused_unless_allowed(tmp_path, results):
    gpu = results.filter(pl.col("seed") == 1).with_columns(pl.lit(v).alias(k) for k, v in H100.items())
    paths = _write_parts(pl.concat([results.filter(pl.col("seed") == 0), gpu]), tmp_path)
    with pytest.raises(
        aggregate.MixedDevicesError,
        match=r"(?s)allow_mixed_devices.*device differs between states.*device cpu: 6 state.*rt/seed0.*"
        r"device cuda: 6 state.*rt/seed1",
    ):
        aggregate.collect(paths, tmp_path / "results.parquet")
    assert not (tmp_path / "results.parquet").exists()
    out = aggregate.collect(paths, tmp_path / "results.parquet", allow_mixed_devices=True)
    assert set(out["device"]) == {"cpu", "cuda"} and set(out["device_name"]) == {"Xeon", "NVIDIA H100 80GB HBM3"}
    assert set(out["torch"]) == {"2.13.0+cpu"}


def test_adapters_trained_on_another_device_kind_are_refused(results):
    trained_on_gpu = results.with_columns(
        pl.when(pl.col("seed") == 1).then(pl.lit("cuda")).otherwise(pl.col("train_device")).alias("train_device")
    )
    with pytest.raises(aggregate.MixedDevicesError, match=r"(?s)train_device differs.*train_device cuda: 6 state"):
        aggregate.check_policy(trained_on_gpu)
    # an imported adapter has no training record: null is not a device
    imported = results.with_columns(
        pl.when(pl.col("seed") == 1).then(None).otherwise(pl.col("train_device")).alias("train_device")
    )
    assert aggregate.check_policy(imported) == []


def test_gpu_models_may_differ_between_pairs_with_a_note_but_not_within_one(tmp_path, results):
    cuda = results.with_columns(pl.lit(v).alias(k) for k, v in H100.items())
    a100 = pl.lit("NVIDIA A100-SXM4-40GB")
    # seed 1 (every method of its pairs) scored on an A100: accepted, with a note naming both models
    by_seed = cuda.with_columns(
        pl.when(pl.col("seed") == 1).then(a100).otherwise(pl.col("device_name")).alias("device_name")
    )
    notes = aggregate.check_policy(by_seed)
    assert len(notes) == 1 and notes[0].startswith("device_name: 2 values (each paired comparison on one)")
    assert "NVIDIA H100 80GB HBM3: 6 state(s)" in notes[0] and "NVIDIA A100-SXM4-40GB: 6 state(s)" in notes[0]
    out = aggregate.collect(_write_parts(by_seed, tmp_path), tmp_path / "results.parquet")
    assert out["device_name"].n_unique() == 2
    # tropical of seed 0 on an A100, its standard side on the H100: that pair is refused, named
    split = cuda.with_columns(
        pl.when((pl.col("seed") == 0) & (pl.col("method") == "tropical"))
        .then(a100)
        .otherwise(pl.col("device_name"))
        .alias("device_name")
    )
    with pytest.raises(
        aggregate.MixedDevicesError,
        match=r"device_name: the methods of 2 paired comparison\(s\) were scored on different devices, "
        r"e.g. rt/seed0/CU/p50: NVIDIA A100-SXM4-40GB, NVIDIA H100 80GB HBM3",
    ):
        aggregate.check_policy(split)
    notes = aggregate.check_policy(split, allow_mixed_devices=True)
    assert notes[0].startswith("device_name: 2 values (accepted)")
    # the full model is a reference, not a side of a pair
    full_elsewhere = cuda.with_columns(
        pl.when(pl.col("method") == "full").then(a100).otherwise(pl.col("device_name")).alias("device_name")
    )
    assert len(aggregate.check_policy(full_elsewhere)) == 1


def test_policy_is_a_table_of_columns():
    """Precision (or any other column that defines a score) is one more entry of the same policy."""
    df = pl.DataFrame(
        {
            **{k: ["m", "m"] for k in ("model",)},
            "task": ["t", "t"],
            "seed": [0, 1],
            "lam": [None, None],
            "scope": ["CU", "CU"],
            "method": ["standard", "standard"],
            "p": [50.0, 50.0],
            "precision": ["fp32", "bf16"],
        },
        schema_overrides={"lam": pl.Float64},
    )
    policy = {"precision": ("same", "allow_mixed_precision")}
    with pytest.raises(ValueError, match=r"(?s)report.allow_mixed_precision.*precision bf16: 1 state"):
        aggregate.check_policy(df, policy=policy)
    assert "precision: 2 values (accepted)" in aggregate.check_policy(df, policy=policy, allow_mixed_precision=True)[0]
