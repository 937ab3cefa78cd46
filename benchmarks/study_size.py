"""How much scoring does a configuration ask for? Evaluated states, examples and tokens per task.

Merges ``config/config.yaml`` and the given ``--configfile`` files as Snakemake does (later files win,
nested keys merge), fills the schema's defaults, loads each task's validation and test splits with the
configuration's caps, encodes them as evaluation does (``evaluation.encode``: the model's tokenizer,
the task's ``max_length``, truncation, no padding) and prints per task: the seeds, the evaluated states
per seed (the full model plus λ × scopes × methods × p), the examples and tokens one state is scored
on, and the totals over every evaluated state. Scoring time scales with tokens (token batching pads
little), so a throughput measured in tokens per second (``benchmarks/bench_batching.py``) turns the
total into a time. It also times the tokenization of one state's splits on this machine and
multiplies it by the evaluated states (tokenizing per state) and by the scoring jobs of
``evaluation.mode: per_sweep`` (one per seed for the full model, one per seed, λ and scope for the
pruned states: the data is tokenized once per job). Usage:
``.venv/bin/python benchmarks/study_size.py --configfile config/study.yaml [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def load_config(files: list[Path]) -> dict:
    """config/config.yaml, then ``files`` merged on top, checked and with the schema's defaults filled."""
    from snakemake.utils import update_config, validate

    from adapter_pruning import config as apc

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for f in files:
        update_config(cfg, yaml.safe_load(Path(f).read_text()) or {})  # as Snakemake merges --configfile
    apc.check_config(cfg)
    validate(cfg, str(REPO / "config" / "config.schema.yaml"), set_default=True)
    return apc.fill_tropical_defaults(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", type=Path, nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from adapter_pruning import config as apc
    from adapter_pruning import data, evaluation, models

    cfg = load_config(args.configfile)
    mirror = cfg["data"]["mirror"]
    mirror = None if mirror is None else apc.resolve_path(mirror, REPO)
    tokenizer = models.load_tokenizer(cfg["model"])
    n_lam = len(apc.lambdas(cfg))
    rows = []
    for task in cfg["tasks"]:
        scopes = cfg["pruning"]["scopes"].get(task, cfg["pruning"]["scopes"]["default"])
        max_length = int(cfg["max_length"].get(task, cfg["max_length"]["default"]))
        pruned = n_lam * len(scopes) * len(cfg["pruning"]["methods"]) * len(cfg["pruning"]["percentages"])
        examples = tokens = 0
        tokenize_seconds = 0.0
        for split in ("validation", "test"):
            df = data.load_split(
                task,
                split,
                mirror=mirror,
                caps=cfg["data"]["caps"],
                seed=cfg["data"]["seed"],
                imdb_validation_size=cfg["data"]["imdb_validation_size"],
            )
            t0 = time.perf_counter()
            enc = evaluation.encode(tokenizer, df, max_length)
            tokenize_seconds += time.perf_counter() - t0
            examples += df.height
            tokens += sum(len(ids) for ids in enc["input_ids"])
        seeds = 1 if task in (cfg.get("adapters") or {}) else len(cfg["seeds"])  # imported: first seed only
        states = seeds * (1 + pruned)
        jobs = seeds * (1 + n_lam * len(scopes))  # per_sweep: evaluate (full) + evaluate_sweep per (λ, scope)
        rows.append(
            {
                "task": task,
                "max_length": max_length,
                "seeds": seeds,
                "states_per_seed": 1 + pruned,
                "examples_per_state": examples,
                "tokens_per_state": tokens,
                "states": states,
                "examples": states * examples,
                "tokens": states * tokens,
                "tokenize_seconds_per_state": round(tokenize_seconds, 2),
                "scoring_jobs_per_sweep_mode": jobs,
                "tokenize_seconds_once_per_state": round(states * tokenize_seconds),
                "tokenize_seconds_once_per_job": round(jobs * tokenize_seconds),
            }
        )
    total_tokens = sum(r["tokens"] for r in rows)
    for r in rows:
        r["token_share"] = round(r["tokens"] / total_tokens, 3)
    summary = {
        "configfiles": [str(f) for f in args.configfile],
        "tasks": rows,
        "states": sum(r["states"] for r in rows),
        "examples": sum(r["examples"] for r in rows),
        "tokens": total_tokens,
        "tokenize_seconds_once_per_state": sum(r["tokenize_seconds_once_per_state"] for r in rows),
        "tokenize_seconds_once_per_job": sum(r["tokenize_seconds_once_per_job"] for r in rows),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
