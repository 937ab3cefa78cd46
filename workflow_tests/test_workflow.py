"""Snakemake itself on the real workflow: DAG shape, a tiny end-to-end run, reruns, lint, report."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from helpers import REPO, job_counts, run_snakemake, write_config
from safetensors.torch import load_file

from adapter_pruning import compact, masks

pytestmark = pytest.mark.slow


def test_dry_run_default_config(tmp_path, shared_data):
    proc = run_snakemake(tmp_path, REPO / "config" / "config.yaml", "-n", "--quiet", "rules", timeout=120)
    counts = job_counts(proc.stdout + proc.stderr)
    # 5 tasks; CU everywhere + CN/CB on rotten_tomatoes = 7 scope-task pairs; evaluation.mode per_sweep
    # (the default): one prune and one evaluate_sweep job per pair, for 2 methods x 6 percentages each.
    assert counts == {
        "all": 1,
        "prepare_data": 5,
        "train_adapter": 5,
        "evaluate": 5,  # the full model
        "evaluate_sweep": 7,
        "tropical_solve": 5,
        "prune": 7,
        "aggregate": 1,
        "report_tables": 1,
        "report_comparison": 1,
        "report_convergence": 1,
        "figure_convergence": 1,
        "report_score_vs_bytes": 1,
        "figure_score_vs_bytes": 1,
        "figure_objective": 1,
        "figure_zonotope": 1,
        "figure_score_vs_retained": 1,
        "figure_methods": 5,
        "figure_delta": 5,
    }


def test_dry_run_paper_grid_is_fast(tmp_path):
    start = time.perf_counter()
    # per_state (the largest DAG: one prune and one evaluate job per state); device cpu: this machine's
    # torch has no CUDA, which device: cuda (paper.yaml) refuses before building the DAG
    overlay = write_config(tmp_path / "per_state.yaml", {"device": "cpu", "evaluation": {"mode": "per_state"}})
    configs = ["--configfile", str(REPO / "config" / "paper.yaml"), str(overlay)]
    proc = run_snakemake(tmp_path, None, "-n", "--quiet", "rules", *configs, timeout=120)
    seconds = time.perf_counter() - start
    counts = job_counts(proc.stdout + proc.stderr)
    n_runs = 5 * 3  # tasks x seeds
    assert counts["train_adapter"] == n_runs and counts["tropical_solve"] == n_runs
    # CU on every task (Table 1), CU+CN+CB on rotten_tomatoes (Table 2); 2 methods; p in {98, ..., 2}
    assert counts["prune"] == 3 * (4 + 3) * 2 * 49
    assert counts["evaluate"] == counts["prune"] + n_runs
    assert counts["prepare_data"] == 5
    # 4185 jobs (one prune and one evaluate job per pruned state, 2058 each). Measured back to back on
    # the quiet 2-core VM: 26.5 and 25.7 s, and 27.5 s for the commit before the method registry (the
    # time is Snakemake's own DAG building; the input functions and code hashes take under 2 s). The
    # bound catches a blow-up (an input function that scans files, a quadratic lookup), not noise.
    assert seconds <= 60, f"paper-grid dry run took {seconds:.1f} s"


def _results(workdir: Path) -> pl.DataFrame:
    return pl.read_parquet(workdir / "results" / "summary" / "results.parquet")


def test_tiny_run_outputs(tiny_run):
    workdir, _, _ = tiny_run
    res = _results(workdir)
    expected_cols = [
        "model",
        "task",
        "seed",
        "lam",
        "scope",
        "method",
        "p",
        "retained",
        "n_params",
        "n_pruned",
        "dense_bytes",
        "compact_bytes",
        "structured_bytes",
        "split",
        "metric",
        "score",
    ]
    assert res.columns[: len(expected_cols)] == expected_cols
    assert res["score"].is_between(0, 1).all() and res["retained"].is_between(0, 1).all()
    # every state: 2 splits x 2 metrics; full + rt (3 scopes) + trec (1 scope), 2 methods, 2 p
    assert res.height == 4 * (2 + (3 + 1) * 2 * 2)
    summary = workdir / "results" / "summary"
    for name in ("table1", "table2"):
        for ext in ("md", "csv", "tex"):
            assert (summary / f"{name}.{ext}").stat().st_size > 0
    for name in (
        "objective",
        "zonotope",
        "score_vs_retained",
        "score_vs_bytes",
        "methods/trec",
        "delta/rotten_tomatoes/tropical_vs_standard",
    ):
        for ext in ("png", "svg"):
            assert (summary / "figures" / f"{name}.{ext}").stat().st_size > 1000
    # score against bytes on disk: the full model and every pruned state (no UN: compact files only)
    sizes = pl.read_csv(summary / "score_vs_bytes.csv")
    assert sizes.height == 2 * 1 + (3 + 1) * 2 * 2
    assert sizes["output"].value_counts().sort("output").rows() == [("compact", 16), ("full", 2)]
    assert (sizes.filter(pl.col("output") == "compact")["share"] < 1).all()
    assert "Score against bytes on disk" in (summary / "score_vs_bytes.md").read_text()
    comparison = pl.read_csv(summary / "comparison.csv")
    assert {"diff", "ci_lo", "ci_hi", "significant", "standard_mean", "tropical_std"} <= set(comparison.columns)
    assert {"p_value", "p_holm", "p_bh", "floor", "diff_std"} <= set(comparison.columns)
    assert comparison.height == (3 + 1) * 2  # (rt: 3 scopes, trec: 1) x 2 p, one λ, one pair (the default)
    assert set(comparison.select("target", "reference").iter_rows()) == {("tropical", "standard")}
    assert (comparison["ci_lo"] <= comparison["diff"]).all() and (comparison["diff"] <= comparison["ci_hi"]).all()
    assert "paired bootstrap" in (summary / "comparison.md").read_text()
    verdicts = pl.read_csv(summary / "comparison_verdicts.csv")
    assert verdicts.height == (3 + 1) + 1  # per task × scope (one λ), and overall
    assert (verdicts["n_states"] + verdicts["n_floor"]).to_list() == [2, 2, 2, 2, 8]
    assert "Verdicts: pooled paired comparisons" in (summary / "comparison_verdicts.md").read_text()
    assert res["lam"].drop_nulls().unique().to_list() == [0.5]
    t1 = (summary / "table1.md").read_text()
    assert "Combined" in t1 and "rotten_tomatoes" in t1 and "trec" in t1
    assert "T-CN" in (summary / "table2.md").read_text()
    convergence = pl.read_csv(summary / "convergence.csv")
    assert sorted(convergence["task"].to_list()) == ["rotten_tomatoes", "trec"]
    assert (convergence["steps"] == 12).all() and (convergence["seeds"] == 1).all()
    assert "majority" in (summary / "convergence.md").read_text()
    for ext in ("png", "svg"):
        assert (summary / "figures" / f"convergence.{ext}").stat().st_size > 1000


def test_the_run_plans_one_device_records_it_and_refuses_cuda_it_cannot_have(tiny_run, tmp_path):
    """The tiny run planned the CPU (device: cpu) for training, calibration and scoring, said so, put
    it in those rules' params and recorded the device of every state; ``device: auto`` on this machine
    (no GPU) plans the CPU too, so it reruns nothing; ``device: cuda`` with this CPU-only torch is
    refused, with the reason, before any job runs."""
    workdir, cfg, output = tiny_run
    assert "device cpu: training, calibration and scoring run on the CPU" in output
    from adapter_pruning.devices import cpu_name

    res = _results(workdir)
    assert res.select("device", "device_name", "train_device", "train_device_name").unique().rows() == [
        ("cpu", cpu_name(), "cpu", cpu_name())
    ]
    # the params Snakemake recorded (the repr of each value, sorted; the spec is the JSON object)
    specs = {}
    for path in (workdir / ".snakemake" / "metadata").iterdir():
        record = json.loads(path.read_text())
        for param in record.get("params", []):
            value = ast.literal_eval(param)
            if isinstance(value, str) and value.startswith("{"):
                specs[record["rule"]] = json.loads(value)
    assert specs["train_adapter"]["device"] == specs["evaluate"]["device"] == "cpu", specs
    auto = run_snakemake(workdir, cfg, "-n", "--config", "device=auto", timeout=120)
    assert "device auto -> cpu (no NVIDIA GPU here" in auto.stderr + auto.stdout
    assert "Nothing to be done" in auto.stdout + auto.stderr, auto.stdout[-3000:]
    cuda = run_snakemake(tmp_path, cfg, "-n", "--config", "device=cuda", timeout=120, check=False)
    out = cuda.stdout + cuda.stderr
    assert cuda.returncode != 0 and "DeviceError" in out and "CPU-only build" in out and "TORCH_SPEC" in out
    assert "Job stats" not in out and not (tmp_path / "results").exists()


def test_standard_prunes_as_many_as_tropical(tiny_run):
    workdir, _, _ = tiny_run
    pruned = _results(workdir).filter(pl.col("method") != "full").unique(["task", "seed", "scope", "method", "p"])
    wide = pruned.pivot(on="method", index=["task", "seed", "scope", "p"], values="n_pruned")
    assert wide.height == 2 * 4  # (rt: 3 scopes, trec: 1) x 2 p
    assert (wide["standard"] == wide["tropical"]).all()
    assert (wide["tropical"] > 0).all()
    # per scope group too: prune.json holds the per-layer counts; CU groups are the layers
    base = workdir / "results" / "tiny" / "rotten_tomatoes" / "seed0" / "pruned" / "CU"
    per = {
        m: [l["n_pruned"] for l in json.loads((base / m / "p90" / "prune.json").read_text())["layers"]]
        for m in ("standard", "tropical")
    }
    assert per["standard"] == per["tropical"]


def test_retained_matches_zeros_in_saved_adapter(tiny_run):
    workdir, _, _ = tiny_run
    res = _results(workdir).filter(pl.col("method") != "full").unique(["task", "seed", "scope", "method", "p"])
    for row in res.iter_rows(named=True):
        d = (
            workdir
            / "results"
            / row["model"]
            / row["task"]
            / f"seed{row['seed']}"
            / "pruned"
            / row["scope"]
            / row["method"]
            / f"p{row['p']:g}"
        )
        state = load_file(d / "adapter.safetensors")
        layers = masks.extract_layers(state, row["task"])
        n = sum(t.numel() for l in layers for t in (l.A, l.B, l.up_bias))
        zeros = sum(int((t == 0).sum()) for l in layers for t in (l.A, l.B, l.up_bias))
        assert n == row["n_params"]
        assert zeros == row["n_pruned"], d
        assert abs((1 - zeros / n) - row["retained"]) < 1e-12
        # the compact file beside it holds exactly the same tensors; the row gives both sizes
        back = compact.load(d / compact.COMPACT_FILE)
        assert sorted(back) == sorted(state)
        for k, t in state.items():
            assert back[k].dtype == t.dtype and torch.equal(back[k].view(torch.uint8), t.view(torch.uint8)), k
        assert row["dense_bytes"] == (d / "adapter.safetensors").stat().st_size
        assert row["compact_bytes"] == (d / compact.COMPACT_FILE).stat().st_size
        # the head is saved untouched next to it
        head = load_file(d / "model_head.safetensors")
        orig = load_file(d.parents[3] / "adapter" / "model_head.safetensors")
        assert all(torch.equal(head[k], orig[k]) for k in orig)


def test_combined_is_chosen_on_validation(tiny_run):
    from adapter_pruning.aggregate import table1_frame

    workdir, _, _ = tiny_run
    res = _results(workdir)
    t1 = table1_frame(res, scope="CU")
    comb = t1.filter(pl.col("row") == "Combined")
    assert comb.height == 2 * 2
    prim = res.filter(pl.col("primary"), pl.col("scope") == "CU")
    for row in comb.iter_rows(named=True):
        sel = prim.filter(pl.col("task") == row["task"], pl.col("p") == row["p"])
        val = {r["method"]: r["score"] for r in sel.filter(pl.col("split") == "validation").iter_rows(named=True)}
        test = {r["method"]: r["score"] for r in sel.filter(pl.col("split") == "test").iter_rows(named=True)}
        chosen = "tropical" if val["tropical"] > val["standard"] else "standard"
        assert row["chosen"] == chosen
        assert row["mean"] == test[chosen]


def test_second_invocation_has_nothing_to_do(tiny_run):
    workdir, cfg, _ = tiny_run
    proc = run_snakemake(workdir, cfg, "-n", timeout=120)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _dry_run_after_change(tiny_run, tmp_path, **overrides):
    workdir, _, _ = tiny_run
    base = yaml.safe_load((workdir / "config.yaml").read_text())
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    cfg = write_config(tmp_path / "changed.yaml", base)
    proc = run_snakemake(workdir, cfg, "-n", "--quiet", "rules", timeout=120)
    return job_counts(proc.stdout + proc.stderr)


def test_changing_lambda_reruns_only_solve_prune_report(tiny_run, tmp_path):
    counts = _dry_run_after_change(tiny_run, tmp_path, tropical={"lam1": 0.123456})
    assert set(counts) == {"all", "tropical_solve", "prune", "evaluate", "aggregate", "report_tables"} | {
        "report_comparison",
        "report_convergence",  # it reads results.parquet (the full model's test scores)
        "figure_convergence",
        "report_score_vs_bytes",  # it reads results.parquet
        "figure_score_vs_bytes",
        "figure_objective",
        "figure_zonotope",
        "figure_score_vs_retained",
        "figure_methods",
        "figure_delta",
    }
    # the pruned states are pruned and scored again; the full model's scores stand
    assert counts["tropical_solve"] == 2 and counts["prune"] == 16 and counts["evaluate"] == 16


def test_changing_training_lr_reruns_training_and_downstream(tiny_run, tmp_path):
    counts = _dry_run_after_change(tiny_run, tmp_path, training={"lr": 0.002})
    assert "prepare_data" not in counts
    assert counts["train_adapter"] == 2 and counts["tropical_solve"] == 2
    assert counts["prune"] == 16 and counts["evaluate"] == 2 + 16


def test_changing_evaluation_precision_reruns_only_scoring(tiny_run, tmp_path):
    counts = _dry_run_after_change(tiny_run, tmp_path, evaluation={"precision": "bf16"})
    assert not {"prepare_data", "train_adapter", "tropical_solve", "prune"} & set(counts)
    assert counts["evaluate"] == 2 + 16 and counts["aggregate"] == 1


def test_changing_training_precision_reruns_training_and_downstream(tiny_run, tmp_path):
    counts = _dry_run_after_change(tiny_run, tmp_path, training={"precision": "bf16"})
    assert "prepare_data" not in counts
    assert counts["train_adapter"] == 2 and counts["tropical_solve"] == 2
    assert counts["prune"] == 16 and counts["evaluate"] == 2 + 16


def test_bf16_run_records_its_precision(tiny_run, tmp_path):
    """A run trained and scored in bf16 (one task of the tiny run): every score row says so, and the
    trained adapter's metrics.json too."""
    import shutil

    workdir, cfg, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)
    base = yaml.safe_load(cfg.read_text())
    base["tasks"] = ["trec"]
    base["training"] = {**base["training"], "precision": "bf16"}
    base["evaluation"] = {**base["evaluation"], "precision": "bf16"}
    base["report"] = {**base.get("report", {}), "zonotope_task": "trec"}
    run_snakemake(copy, write_config(tmp_path / "bf16.yaml", base), "--cores", "2", timeout=900)
    res = _results(copy)
    assert set(res["precision"]) == {"bf16"} and set(res["train_precision"]) == {"bf16"}
    metrics = json.loads((copy / "results" / "tiny" / "trec" / "seed0" / "adapter" / "metrics.json").read_text())
    assert metrics["precision"] == "bf16"
    fp32 = _results(workdir).filter(pl.col("task") == "trec")
    assert set(fp32["precision"]) == {"fp32"} and res.height == fp32.height


def test_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, REPO / "config" / "config.yaml", "--lint", timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_html_report(tiny_run):
    workdir, cfg, _ = tiny_run
    report = workdir / "report.html"
    run_snakemake(workdir, cfg, "--report", str(report), timeout=300)
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    for name in ("table1", "results.parquet", "zonotope", "objective"):
        assert name in html


def test_per_sweep_mode_writes_the_same_results(tiny_run, tmp_path):
    """evaluation.mode: per_sweep prunes every method and p of a (task, seed, scope) in one prune job
    and scores them in one evaluate_sweep job, writing the same files: switching modes reruns pruning (its
    params differ) and the scoring of the pruned states, not the full model's, and results.parquet
    comes out equal."""
    import shutil

    workdir, cfg, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)
    base = yaml.safe_load(cfg.read_text())
    base.setdefault("evaluation", {})["mode"] = "per_sweep"
    sweep_cfg = write_config(tmp_path / "sweep.yaml", base)
    proc = run_snakemake(copy, sweep_cfg, "-n", "--quiet", "rules", timeout=120)
    planned = job_counts(proc.stdout + proc.stderr)
    # rotten_tomatoes: CU, CN, CB; trec: CU -> 4 sweep jobs (2 methods x 2 p each) instead of 16 per-state jobs
    assert planned["prune"] == planned["evaluate_sweep"] == 3 + 1
    assert "train_adapter" not in planned and "evaluate" not in planned  # the full models' scores stand
    run_snakemake(copy, sweep_cfg, "--cores", "2", timeout=900)
    for rule in ("prune", "evaluate"):
        assert (copy / "logs" / rule / "tiny" / "trec" / "seed0" / "CU_sweep.log").is_file()
    before, after = _results(workdir), _results(copy)
    assert after.equals(before)
    # each file at its own path: the prediction rows name their state (λ, scope, method, p)
    files = sorted((workdir / "results").rglob("predictions/**/*.parquet"))
    assert len(files) == 2 + 16
    for f in files:
        rel = f.relative_to(workdir)
        assert pl.read_parquet(copy / rel).equals(pl.read_parquet(f)), rel


def test_unit_scope_per_state(tiny_run, tmp_path):
    """The unit scope UN (structured pruning) for trec beside CU in per_state mode, run only up to its
    score file: one prune and one evaluate job for the state (tropical reads the run's solve), the state's
    folder with structured/, the score rows with the retained parameter share and the structured bytes.
    per_sweep mode (prune_units, evaluate_units_sweep) runs UN end to end in the study test below."""
    import shutil

    workdir, cfg, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)
    base = yaml.safe_load(cfg.read_text())
    base["pruning"]["scopes"] = {**base["pruning"]["scopes"], "trec": ["CU", "UN"]}
    base["pruning"]["units"] = {"methods": ["tropical"], "percentages": [75]}
    seed_dir = Path("results") / "tiny" / "trec" / "seed0"
    target = seed_dir / "scores" / "UN" / "tropical" / "p75.parquet"
    proc = run_snakemake(copy, write_config(tmp_path / "units.yaml", base), "--cores", "2", str(target), timeout=600)
    assert job_counts(proc.stdout + proc.stderr) == {"prune": 1, "evaluate": 1}
    df = pl.read_parquet(copy / target)
    assert df["scope"].unique().to_list() == ["UN"] and df["n_pruned"].unique().to_list() == [3 * 2 * 129]
    assert df["retained"].unique().to_list() == [1 - 3 * 2 * 129 / (2 * (4 * 129 + 64))]
    assert (df["structured_bytes"] < df["dense_bytes"]).all()
    state = copy / seed_dir / "pruned" / "UN" / "tropical" / "p75"
    info = json.loads((state / "prune.json").read_text())
    assert info["widths"] == [1, 1] and len(info["units_removed"][0]) == 3
    assert info["structured_bytes"] == (state / "structured" / "adapter.safetensors").stat().st_size


def test_study_mode_lambdas_methods_and_dense_small(tiny_run, tmp_path):
    """The comparison study's machinery on the tiny run: two λ (a lam<λ>/ level in the paths, a `lam`
    column), every mask method of the registry (rule calibrate writes the four statistics in one job),
    dense small adapters, per_sweep jobs, comparison.* with two configured pairs (P_T alone against P_S
    alone among them) and the per-task figures. The λ = 0.5 states of standard and tropical are those of
    the one-λ run (λ 0.5 is its default). The unit scope UN (structured pruning) runs beside CU with
    every method that has unit scores at one p (prune_units, evaluate_units_sweep): the same units
    removed per layer by every method, the structured adapter's bytes in results.parquet."""
    import shutil

    from adapter_pruning import methods

    workdir, cfg, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)
    base = yaml.safe_load(cfg.read_text())
    base["tasks"] = ["trec"]
    base["evaluation"] = {**base.get("evaluation", {}), "mode": "per_sweep"}
    base["tropical"] = {**base.get("tropical", {}), "lam": [0.5, 1.0]}
    base["pruning"] = {**base["pruning"], "methods": methods.names(), "dense_small": [1, 2]}
    base["pruning"]["calibration_examples"] = 32
    base["pruning"]["scopes"] = {**base["pruning"]["scopes"], "trec": ["CU", "UN"]}
    base["pruning"]["units"] = {"methods": methods.unit_methods(), "percentages": [50]}
    pairs = [["tropical", "standard"], ["tropical_pt", "standard_ps"]]
    base["report"] = {**base.get("report", {}), "zonotope_task": "trec", "table_lam": 0.5, "comparisons": pairs}
    study = write_config(tmp_path / "study.yaml", base)
    planned = job_counts(run_snakemake(copy, study, "-n", "--quiet", "rules", timeout=120).stdout)
    assert "train_adapter" not in planned and planned["calibrate"] == 1 and planned["tropical_solve"] == 2
    # one job per λ (per_sweep: every method and p of a scope in one job); the full model's scores stand;
    # each dense small adapter is trained and scored by a job of its own
    assert (
        planned["prune"] == planned["evaluate_sweep"] == planned["prune_units"] == planned["evaluate_units_sweep"] == 2
    )
    assert planned["train_dense_small"] == planned["evaluate"] == 2
    run_snakemake(copy, study, "--cores", "2", timeout=900)
    # evaluation.precision defines calibration and scoring: changing it reruns those (the full model and
    # the dense small adapters too), and the sweeps that prune with the calibration (activation, taylor,
    # sparsegpt), nothing upstream
    base["evaluation"]["precision"] = "bf16"
    changed = write_config(tmp_path / "study-bf16.yaml", base)
    replanned = job_counts(run_snakemake(copy, changed, "-n", "--quiet", "rules", timeout=120).stdout)
    assert replanned["calibrate"] == 1 and replanned["evaluate_sweep"] == 2 and replanned["evaluate"] == 1 + 2
    assert replanned["prune"] == 2 and not {"train_adapter", "train_dense_small", "tropical_solve"} & set(replanned)
    assert replanned["prune_units"] == replanned["evaluate_units_sweep"] == 2  # UN: activation and taylor
    res = _results(copy)
    units = res.filter(pl.col("scope") == "UN")
    pruned = res.filter(~pl.col("method").is_in(["full", "dense_small"]), pl.col("scope") != "UN")
    assert pruned["structured_bytes"].is_null().all()
    # UN: every unit method at p 50 removes 2 of the 4 units of each layer: the same parameters
    assert sorted(units["method"].unique().to_list()) == sorted(methods.unit_methods())
    assert units["p"].unique().to_list() == [50.0] and units["n_pruned"].unique().to_list() == [2 * 2 * 129]
    assert units["retained"].unique().to_list() == [1 - 2 * 2 * 129 / (2 * (4 * 129 + 64))]
    assert (units["structured_bytes"] < units["dense_bytes"]).all() and units["compact_bytes"].is_not_null().all()
    assert (units.filter(pl.col("method") == "standard")["slack"] == 0).all()
    assert sorted(pruned["lam"].unique().to_list()) == [0.5, 1.0]
    assert sorted(pruned["method"].unique().to_list()) == sorted(methods.names())
    counts = pruned.unique(["lam", "scope", "method", "p"]).pivot(
        on="method", index=["lam", "scope", "p"], values="n_pruned"
    )
    for method in ("standard", "random", "activation", "taylor", "sparsegpt", "tropical_opt"):
        assert (counts[method] == counts["tropical"]).all(), method
    assert (counts["tropical_pt"] == counts["standard_ps"]).all() and (
        counts["tropical_pt"] >= counts["tropical"]
    ).all()
    slack = pruned.unique(["lam", "scope", "method", "p"]).pivot(
        on="method", index=["lam", "scope", "p"], values="slack"
    )
    assert (slack["standard"] == 0).all() and (slack["standard_ps"] == 0).all() and (slack["tropical"] > 0).all()
    assert (slack["tropical_opt"] == slack["tropical"]).all()
    seed_dir = copy / "results" / "tiny" / "trec" / "seed0"
    assert (seed_dir / "pruned" / "lam1" / "CU" / "sparsegpt" / "p90" / "prune.json").is_file()
    assert (seed_dir / "predictions" / "lam0.5" / "CU" / "taylor" / "p50.parquet").is_file()
    for method in methods.unit_methods():
        info = json.loads((seed_dir / "pruned" / "lam1" / "UN" / method / "p50" / "prune.json").read_text())
        assert (
            info["widths"] == [2, 2]
            and info["structured_bytes"]
            == (seed_dir / "pruned" / "lam1" / "UN" / method / "p50" / "structured" / "adapter.safetensors")
            .stat()
            .st_size
        )
    for statistic in methods.CALIBRATION:
        assert (seed_dir / "calibration" / f"{statistic}.safetensors").is_file()
    # dense small adapters: width 1 and 2 of the full width 4 (hidden 64), at their exact retained share
    small = res.filter(pl.col("method") == "dense_small", pl.col("split") == "test", pl.col("primary"))
    assert sorted(small["width"].to_list()) == [1, 2] and small["scope"].is_null().all()
    for row in small.iter_rows(named=True):
        w = row["width"]
        assert row["retained"] == pytest.approx((w * 129 + 64) / (4 * 129 + 64))
        assert row["n_params"] == 2 * (4 * 129 + 64)
    assert (seed_dir / "dense_small" / "r2" / "dense_small.json").is_file()
    one_lambda = _results(workdir).filter(pl.col("task") == "trec", pl.col("method").is_in(["standard", "tropical"]))
    same = res.filter(
        pl.col("lam").is_null() | (pl.col("lam") == 0.5),
        pl.col("method").is_in(["standard", "tropical"]),
        pl.col("scope") != "UN",
    )
    assert same.sort(pl.all()).equals(one_lambda.sort(pl.all()))
    # every table, column and figure for each of the two configured pairs, slack and the dense small adapters
    summary = copy / "results" / "summary"
    comparison = pl.read_csv(summary / "comparison.csv")
    # CU: 2 λ x 2 p x 2 pairs; UN: 2 λ x 1 p for tropical - standard (P_T, P_S alone have no unit form)
    assert sorted(comparison["lam"].unique().to_list()) == [0.5, 1.0] and comparison.height == 2 * 2 * 2 + 2
    assert comparison.filter(pl.col("scope") == "UN").select("target", "reference").unique().rows() == [
        ("tropical", "standard")
    ]
    assert list(dict.fromkeys(comparison.select("target", "reference").iter_rows())) == [tuple(p) for p in pairs]
    assert {"taylor_mean", "sparsegpt_mean", "tropical_slack", "ci_lo", "ci_hi", "p_holm", "p_bh"} <= set(
        comparison.columns
    )
    verdicts = pl.read_csv(summary / "comparison_verdicts.csv")
    assert verdicts.select("target", "reference", "scope", "lam", "overall").rows() == [
        (target, reference, scope, lam, overall)
        for target, reference in pairs
        for scope, lam, overall in (
            ("CU", 0.5, False),
            ("CU", 1.0, False),
            *((("UN", 0.5, False), ("UN", 1.0, False)) if target == "tropical" else ()),
            ("all", None, True),
        )
    ]
    md, vmd = (summary / "comparison.md").read_text(), (summary / "comparison_verdicts.md").read_text()
    assert "## Dense small adapters" in md
    for target, reference in pairs:
        assert f"## {target} − {reference}" in md and f"## {target} − {reference}" in vmd
        for ext in ("png", "svg"):
            assert (summary / "figures" / "delta" / "trec" / f"{target}_vs_{reference}.{ext}").stat().st_size > 1000
    assert len(list((summary / "figures" / "delta" / "trec").glob("*.png"))) == 2
    for name in ("methods/trec", "score_vs_retained"):
        assert (summary / "figures" / f"{name}.png").stat().st_size > 1000
