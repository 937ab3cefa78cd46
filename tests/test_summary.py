"""The end-of-run summary (adapter_pruning.summary) on a hand-made results folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adapter_pruning.summary import print_run_summary, report_command, summary_text

TABLE1 = (
    "# Table 1: retained adapter parameters vs score (scope CU, test split, ×100)\n\n"
    "| trec | 10.1% | FM |\n|---|---|---|\n| Standard | 37.50 |  |\n| Tropical | 41.67* | 39.58 |\n"
)


def _results(root: Path, name: str = "results") -> Path:
    """A results folder as the workflow leaves it: results.parquet (5 rows), two tables, two figures."""
    summary = root / name / "summary"
    (summary / "figures").mkdir(parents=True)
    pq.write_table(pa.table({"score": [0.1, 0.2, 0.3, 0.4, 0.5]}), summary / "results.parquet")
    (summary / "table1.md").write_text(TABLE1, encoding="utf-8")
    (summary / "table2.md").write_text("# Table 2: rotten_tomatoes, S/T × CN/CU/CB\n\n| a |\n", encoding="utf-8")
    for stem in ("table1", "table2"):
        for ext in ("csv", "tex"):
            (summary / f"{stem}.{ext}").write_text("x")
    (summary / "comparison.md").write_text("# Method comparisons per pruning state\n", encoding="utf-8")
    (summary / "comparison_verdicts.md").write_text("# Verdicts: pooled paired comparisons\n", encoding="utf-8")
    for stem, exts in (("comparison", ("csv", "tex")), ("comparison_verdicts", ("csv",))):
        for ext in exts:
            (summary / f"{stem}.{ext}").write_text("x")
    (summary / "figures" / "delta" / "trec").mkdir(parents=True)
    for stem in ("objective", "zonotope", "delta/trec/tropical_vs_standard", "delta/trec/random_vs_standard"):
        for ext in ("png", "svg"):
            (summary / "figures" / f"{stem}.{ext}").write_bytes(b"x")
    return root / name


def _workflow(basedir: Path, configfiles=(), config_args=()) -> SimpleNamespace:
    """The attributes of Snakemake's workflow object that print_run_summary reads."""
    return SimpleNamespace(
        basedir=str(basedir),
        main_snakefile=str(basedir / "Snakefile"),
        overwrite_configfiles=[Path(f) for f in configfiles],
        config_settings=SimpleNamespace(config_args=list(config_args)),
    )


def test_summary_lists_outputs_and_prints_table1(tmp_path):
    text = summary_text(_results(tmp_path), base=tmp_path, report_cmd="snakemake --report report.html")
    assert "results/summary/results.parquet" in text and "(5 rows)" in text
    assert "results/summary/table1.md   Table 1: retained adapter parameters vs score" in text
    assert "results/summary/table2.md   Table 2: rotten_tomatoes" in text
    assert "results/summary/comparison.md   Method comparisons per pruning state" in text
    assert "results/summary/comparison_verdicts.md   Verdicts: pooled paired comparisons (also .csv)" in text
    assert text.count("(also .csv, .tex)") == 3
    assert "results/summary/figures/   figures: delta/trec/* (2), objective, zonotope (.png, .svg)" in text
    assert "snakemake --report report.html" in text
    assert TABLE1.rstrip() in text  # the headline comparison, as written


def test_summary_paths_are_absolute_outside_base(tmp_path):
    results = _results(tmp_path / "elsewhere")
    text = summary_text(results, base=tmp_path / "repo")
    assert str(results / "summary" / "results.parquet") in text
    assert str(results / "summary" / "table1.md") in text


def test_summary_of_a_partial_run_is_one_line(tmp_path):
    text = summary_text(tmp_path / "results", base=tmp_path)
    assert text == (
        "No results summary: results/summary/results.parquet does not exist (this run made only part of the workflow)."
    )


def test_summary_without_table1_still_lists_what_exists(tmp_path):
    results = _results(tmp_path)
    for f in (results / "summary").glob("table*"):
        f.unlink()
    text = summary_text(results, base=tmp_path)
    assert "results.parquet" in text and "Table 1" not in text


def test_report_command_repeats_what_selects_the_run(tmp_path):
    cmd = report_command(
        ".venv/bin/snakemake",
        configfiles=[tmp_path / "config" / "test.yaml"],
        config_args=["tasks=['trec']"],
        base=tmp_path,
    )
    assert (
        cmd == ".venv/bin/snakemake --configfile config/test.yaml --config "
        "'tasks=['\"'\"'trec'\"'\"']' --report report.html"
    )
    cmd = report_command("snakemake", snakefile="/repo/Snakefile", directory="/runs/a b")
    assert cmd == "snakemake --snakefile /repo/Snakefile --directory '/runs/a b' --report report.html"


def test_print_run_summary_in_the_workflow_folder(tmp_path, monkeypatch, capsys):
    _results(tmp_path, "results-test")
    monkeypatch.chdir(tmp_path)
    wf = _workflow(tmp_path, configfiles=[tmp_path / "config" / "test.yaml"])
    assert print_run_summary({"results": "results-test"}, wf) is True
    out = capsys.readouterr().out
    assert "results-test/summary/results.parquet" in out and "results-test/summary/figures/" in out
    assert "--configfile config/test.yaml --report report.html" in out
    assert "--directory" not in out and "--snakefile" not in out
    assert "| Tropical | 41.67* | 39.58 |" in out


def test_print_run_summary_with_another_working_directory(tmp_path, monkeypatch, capsys):
    repo, run = tmp_path / "repo", tmp_path / "run"
    repo.mkdir()
    _results(run)
    monkeypatch.chdir(run)
    assert print_run_summary({"results": "results"}, _workflow(repo)) is True
    out = capsys.readouterr().out
    assert str(run / "results" / "summary" / "table1.md") in out
    assert f"--snakefile {repo / 'Snakefile'} --directory {run} --report report.html" in out


@pytest.mark.parametrize("breakage", ["no results key", "table not UTF-8"])
def test_print_run_summary_never_raises(tmp_path, monkeypatch, capsys, breakage):
    results = _results(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = {"results": "results"}
    if breakage == "no results key":
        config = {}
    else:
        (results / "summary" / "table1.md").write_bytes(b"\xff\xfe not UTF-8")
    assert print_run_summary(config, _workflow(tmp_path)) is False
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("WARNING: could not print the end-of-run summary")


def test_summary_notes_what_the_device_policy_accepted(tmp_path):
    """States scored on two GPU models (each pair on one) are accepted with a note in the summary."""
    import polars as pl

    results = _results(tmp_path)
    rows = [
        {"model": "m", "task": "t", "seed": s, "lam": None, "scope": "CU", "method": m, "p": 50.0, "device": "cuda"}
        | {"device_name": name, "train_device": "cuda", "train_device_name": name}
        for s, name in ((0, "NVIDIA A100-SXM4-40GB"), (1, "NVIDIA H100 80GB HBM3"))
        for m in ("standard", "tropical")
    ]
    pl.DataFrame(rows, schema_overrides={"lam": pl.Float64}).write_parquet(results / "summary" / "results.parquet")
    text = summary_text(results, base=tmp_path)
    assert "Note (device policy, docs/cluster.md): device_name: 2 values (each paired comparison on one)" in text
    assert "train_device_name: 2 values (accepted)" in text
    one_gpu = pl.DataFrame(rows[:2], schema_overrides={"lam": pl.Float64})
    one_gpu.write_parquet(results / "summary" / "results.parquet")
    assert "Note (device policy" not in summary_text(results, base=tmp_path)
