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
pruned states: the data is tokenized once per job).

With ``--throughput FILE`` (the ``--json`` output of ``benchmarks/bench_precision.py``, on the
machine to project onto: this CPU at 1 or 2 threads, or a GPU) it also projects the study's compute
time per precision measured there: scoring = each task's tokens over the tokens/s measured on that
task (the mean over measured tasks for one that was not), training = seeds × (steps × s/step +
validations × validation examples over the measured examples/s). Job-seconds on one worker (one
thread, or the one GPU), per-job start-up excluded. Usage:
``.venv/bin/python benchmarks/study_size.py --configfile config/study.yaml [--throughput b.json ...] [--json o.json]``
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
    ap.add_argument(
        "--throughput", type=Path, nargs="*", default=[], help="bench_precision.py --json outputs to project onto"
    )
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
        # per scope its own grid (the unit scope UN may run fewer methods and percentages)
        pruned = n_lam * sum(len(m) * len(p) for m, p in (apc.scope_grid(cfg, scope) for scope in scopes))
        examples = tokens = 0
        tokenize_seconds = 0.0
        validation_examples = 0
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
            if split == "validation":
                validation_examples = df.height
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
                "validation_examples": validation_examples,
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
    summary["projections"] = [p for f in args.throughput for p in project(cfg, rows, json.loads(f.read_text()), f)]
    print(json.dumps(summary, indent=1))
    for proj in summary["projections"]:
        print(
            f"{proj['source']} ({proj['device']}, {proj['threads']} thread(s)), {proj['precision']}: scoring "
            f"{proj['scoring_hours']:.1f} h, training {proj['training_hours']:.1f} h"
            + (f" (tasks without a measurement: {proj['unmeasured']})" if proj["unmeasured"] else "")
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


def project(cfg: dict, rows: list[dict], bench: dict, source: Path) -> list[dict]:
    """Projected job-hours of scoring and training the study of ``rows`` (with configuration ``cfg``)
    per precision and thread count measured in ``bench`` (a bench_precision.py report)."""
    out = []
    train = cfg["training"]
    n_validations = train["steps"] // train["eval_every"] + (train["steps"] % train["eval_every"] != 0)
    for run in bench["runs"]:
        measured = run["tasks"]
        precisions = sorted(
            {p for t in measured.values() for p in t.get("scoring", {}) if isinstance(t["scoring"][p], dict)}
        )
        for prec in precisions:
            tok_s = {t: m["scoring"][prec]["tokens_per_s"] for t, m in measured.items() if "scoring" in m}
            ex_s = {t: m["scoring"][prec]["ex_per_s"] for t, m in measured.items() if "scoring" in m}
            step_s = {t: m["training"][prec]["s_per_step"] for t, m in measured.items() if "training" in m}
            if not tok_s:
                continue
            mean_tok, mean_ex = sum(tok_s.values()) / len(tok_s), sum(ex_s.values()) / len(ex_s)
            mean_step = sum(step_s.values()) / len(step_s) if step_s else None
            scoring = training = 0.0
            tasks = []
            for r in rows:
                t = r["task"]
                sec_score = r["tokens"] / tok_s.get(t, mean_tok)
                n_val = r.get("validation_examples", 0)
                step = step_s.get(t, mean_step)
                sec_train = (
                    None
                    if step is None
                    else r["seeds"] * (train["steps"] * step + n_validations * n_val / ex_s.get(t, mean_ex))
                )
                scoring += sec_score
                training += sec_train or 0.0
                tasks.append({"task": t, "scoring_hours": sec_score / 3600, "training_hours": (sec_train or 0) / 3600})
            out.append(
                {
                    "source": str(source),
                    "device": bench["env"].get("device_name") or bench["env"]["device"],
                    "threads": run["threads"],
                    "precision": prec,
                    "scoring_hours": scoring / 3600,
                    "training_hours": training / 3600,
                    "unmeasured": [r["task"] for r in rows if r["task"] not in tok_s],
                    "tasks": tasks,
                }
            )
    return out


if __name__ == "__main__":
    main()
