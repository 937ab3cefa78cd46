"""Aggregation and the paper's tables on synthetic results with known answers."""

from __future__ import annotations

import polars as pl
import pytest

from adapter_pruning import aggregate
from adapter_pruning.io import CorruptFileError, write_parquet
from adapter_pruning.results import COLUMNS, SCHEMA

PROV = {"device": "cpu", "torch": "2.13.0+cpu", "transformers": "4.57.6", "adapters": "1.3.0"}


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


def test_states_from_different_devices_are_refused_unless_allowed(tmp_path, results):
    gpu = results.filter(pl.col("seed") == 1).with_columns(pl.lit("cuda:NVIDIA H100 80GB HBM3").alias("device"))
    mixed = pl.concat([results.filter(pl.col("seed") == 0), gpu])
    paths = []
    for i, part in enumerate(mixed.partition_by(["seed", "method"])):
        paths.append(tmp_path / f"{i}.parquet")
        write_parquet(part, paths[-1])
    with pytest.raises(
        aggregate.MixedDevicesError,
        match=r"(?s)allow_mixed_devices.*cpu: 6 state.*rt/seed0.*"
        r"cuda:NVIDIA H100 80GB HBM3: 6 state.*rt/seed1",
    ):
        aggregate.collect(paths, tmp_path / "results.parquet")
    assert not (tmp_path / "results.parquet").exists()
    out = aggregate.collect(paths, tmp_path / "results.parquet", allow_mixed_devices=True)
    assert set(out["device"]) == {"cpu", "cuda:NVIDIA H100 80GB HBM3"}
    assert set(out["torch"]) == {"2.13.0+cpu"}
