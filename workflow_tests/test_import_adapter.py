"""Workflow mode for adapters trained elsewhere (config key `adapters`, rule import_adapter).

The adapters here are made with the plain `adapters` library (not this package's training code) on
the tiny random BERT of the workflow tests, trained a few steps and saved with `save_adapter(...,
with_head=True)`. One tiny run imports such an adapter for rotten_tomatoes and trains trec as usual;
bad adapters are refused while Snakemake reads the configuration, before any job.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
import yaml
from helpers import job_counts, run_snakemake, tiny_config, write_config

from adapter_pruning.io import sha256_file
from adapter_pruning.testing import make_tiny_bert

pytestmark = pytest.mark.slow

TASK = "rotten_tomatoes"


def save_adapter(model_dir, out, *, num_labels: int = 2, safetensors: bool = True, steps: int = 3, seed: int = 0):
    """Plain `adapters` code: a ReLU Pfeiffer adapter + classification head, a few AdamW steps, saved."""
    from adapters import AutoAdapterModel, SeqBnConfig
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    model = AutoAdapterModel.from_pretrained(str(model_dir))
    model.add_adapter("external", config=SeqBnConfig(reduction_factor=16, non_linearity="relu"))
    model.add_classification_head("external", num_labels=num_labels)
    model.train_adapter("external")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    batch = tok(["a fine film", "dull and long", "great acting", "a waste of time"], padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(out), "external", with_head=True, use_safetensors=safetensors)
    return out


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory, tiny_model, shared_data):
    """The tiny workflow with rotten_tomatoes' adapter imported (saved as .bin) and trec trained; one pruning
    percentage and CU only, to keep it short."""
    workdir = tmp_path_factory.mktemp("imported_run")
    adapter = save_adapter(tiny_model, workdir / "external" / "rt_adapter", safetensors=False)
    cfg = tiny_config(
        tiny_model,
        adapters={TASK: str(adapter)},
        pruning={"percentages": [50], "scopes": {"default": ["CU"], TASK: ["CU"]}},
    )
    cfg_path = write_config(workdir / "config.yaml", cfg)
    proc = run_snakemake(workdir, cfg_path, "--cores", "2", timeout=600)
    return workdir, cfg_path, adapter, proc.stdout + proc.stderr


def test_imported_task_is_not_trained(imported_run):
    workdir, _, _, output = imported_run
    counts = job_counts(output)
    assert counts["import_adapter"] == 1 and counts["train_adapter"] == 1  # rotten_tomatoes, trec
    assert counts["tropical_solve"] == 2 and counts["prune"] == 2 * 2  # 2 tasks x 2 methods, CU, p = 50
    assert counts["evaluate"] == 2 + 2 * 2  # + the full model of each task
    assert not (workdir / "logs" / "train_adapter" / "tiny" / TASK).exists()
    assert (workdir / "logs" / "import_adapter" / "tiny" / TASK / "seed0.log").is_file()


def test_imported_task_runs_the_first_seed_only(imported_run, tmp_path):
    workdir, _, adapter, _ = imported_run
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg_path = write_config(tmp_path / "config.yaml", {**cfg, "seeds": [3, 1]})
    proc = run_snakemake(tmp_path, cfg_path, "-n", timeout=120)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["import_adapter"] == 1 and counts["train_adapter"] == 2
    assert counts["prune"] == 3 * 2  # (rotten_tomatoes seed 3, trec seeds 3 and 1) x 2 methods
    assert counts["evaluate"] == 3 * 2 + 3  # + the full model of each
    assert f"{TASK}/seed3/adapter" in proc.stdout + proc.stderr
    assert f"{TASK}/seed1" not in proc.stdout + proc.stderr


def test_imported_adapter_is_converted_and_recorded(imported_run):
    workdir, _, adapter, _ = imported_run
    out = workdir / "results" / "tiny" / TASK / "seed0" / "adapter"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "adapter.safetensors",
        "adapter_config.json",
        "head_config.json",
        "metrics.json",
        "model_head.safetensors",
    ]
    info = json.loads((out / "metrics.json").read_text())
    assert info["imported"] is True and info["source"]["dir"] == str(adapter.resolve())
    assert info["source"]["sha256"]["pytorch_adapter.bin"] == sha256_file(adapter / "pytorch_adapter.bin")
    assert info["converted"] == {
        "pytorch_adapter.bin": "adapter.safetensors",
        "pytorch_model_head.bin": "model_head.safetensors",
    }
    assert info["adapter_sha256"] == sha256_file(out / "adapter.safetensors")
    assert info["adapter_name"] == "external" and info["d"] == 64


def test_imported_adapter_is_pruned_and_scored(imported_run):
    workdir, _, _, _ = imported_run
    for method in ("standard", "tropical"):
        pruned = workdir / "results" / "tiny" / TASK / "seed0" / "pruned" / "CU" / method / "p50"
        assert (pruned / "adapter.safetensors").is_file()
        assert json.loads((pruned / "prune.json").read_text())["n_pruned"] > 0
    res = pl.read_parquet(workdir / "results" / "summary" / "results.parquet")
    rt = res.filter(pl.col("task") == TASK)
    assert set(rt["method"]) == {"full", "standard", "tropical"}
    assert set(rt["seed"]) == {0} and set(res["task"]) == {TASK, "trec"}
    assert (workdir / "results" / "summary" / "table1.md").stat().st_size > 0


def test_changed_adapter_file_reruns_its_task_only(imported_run, tiny_model):
    workdir, cfg_path, adapter, _ = imported_run
    proc = run_snakemake(workdir, cfg_path, "-n", "--quiet", "rules", timeout=120)
    assert job_counts(proc.stdout + proc.stderr) == {}
    save_adapter(tiny_model, adapter, safetensors=False, seed=1)  # the same files, new weights
    proc = run_snakemake(workdir, cfg_path, "-n", "--quiet", "rules", timeout=120)
    counts = job_counts(proc.stdout + proc.stderr)
    assert "train_adapter" not in counts
    assert counts["import_adapter"] == 1 and counts["tropical_solve"] == 1 and counts["prune"] == 2
    assert counts["evaluate"] == 1 + 2


def test_mismatched_adapters_are_refused_before_any_job(tmp_path, tiny_model, shared_data):
    """A 32-wide adapter for the 64-wide tiny model, and a 2-label head for 6-class trec: both named, at once."""
    narrow = save_adapter(make_tiny_bert(tmp_path / "narrow-bert"), tmp_path / "narrow", steps=1)  # hidden 32
    two_labels = save_adapter(tiny_model, tmp_path / "two_labels", steps=1)
    cfg = write_config(
        tmp_path / "config.yaml", tiny_config(tiny_model, adapters={TASK: str(narrow), "trec": str(two_labels)})
    )
    proc = run_snakemake(tmp_path, cfg, "--cores", "1", timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"adapters.{TASK} = " in output and "adapter width d=" in output
    assert str(narrow / "adapter.safetensors") in output and "hidden_size=64" in output
    assert "adapters.trec = " in output and str(two_labels / "head_config.json") in output
    assert "num_labels=2 but task 'trec' has 6 labels" in output
    assert not job_counts(output) and not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
