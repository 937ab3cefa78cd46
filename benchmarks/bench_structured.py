"""Bytes of a unit-pruned adapter's ``structured/`` output against its dense and compact files (issue 28;
docs/benchmarks.md, "Structured unit pruning").

For each adapter folder given (an AdapterHub folder, e.g. ``<seed dir>/adapter`` of a workflow run), it
runs ``adapter-prune --scope UN`` in-process at every ``--p`` for ``--methods`` (default standard and
tropical; the sizes depend only on the widths, so on ``p``, not on the method) and prints, per ``p``:
the kept units per layer, the retained parameter share, the bytes of the dense pruned file
(``adapter.safetensors`` with zeros), of the compact file (``adapter.compact.safetensors``), of the
structured adapter's weight file (``structured/adapter.safetensors``) and of the whole structured
folder (config and head included), plus with ``--evaluate TASK`` each method's score of the structured
adapter loaded with plain ``load_adapter`` on ``--max-examples`` examples of ``--split``.

Usage: ``.venv/bin/python benchmarks/bench_structured.py ADAPTER_DIR [...] [--p 25 50 75 90 96]
[--methods standard tropical] [--evaluate rotten_tomatoes --max-examples 200] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from adapter_pruning import cli


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def measure(adapter_dir: Path, ps, methods, model: str, evaluate: str | None, max_examples: int, split: str) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = [str(adapter_dir), "--model", model, "--scope", "UN", "--method", *methods, "--out", str(out)]
        argv += ["--p", *[str(p) for p in ps], "--quiet"]
        if evaluate:
            argv += ["--evaluate", evaluate, "--split", split, "--max-examples", str(max_examples)]
        t0 = time.perf_counter()
        rc = cli.main(argv)
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"adapter-prune failed on {adapter_dir} ({rc})")
        summary = json.loads((out / "summary.json").read_text())
        for row in summary["results"]:
            if row["method"] == "full":
                continue
            d = Path(row["dir"])
            info = json.loads((d / "prune.json").read_text())
            rows.append(
                {
                    "adapter": str(adapter_dir),
                    "method": row["method"],
                    "p": row["p"],
                    "widths": info["widths"],
                    "retained": row["retained"],
                    "dense_bytes": row["dense_bytes"],
                    "compact_bytes": row["compact_bytes"],
                    "structured_bytes": row["structured_bytes"],
                    "structured_folder_bytes": _folder_bytes(d / "structured"),
                    "dense_folder_bytes": _folder_bytes(Path(adapter_dir)),
                    "score": None if not evaluate else row["scores"],
                    "seconds_all": seconds,
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("adapters", nargs="+", type=Path)
    ap.add_argument("--p", nargs="+", type=float, default=[25, 50, 75, 90, 96])
    ap.add_argument("--methods", nargs="+", default=["standard", "tropical"])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--evaluate", default=None)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--max-examples", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for a in args.adapters:
        rows += measure(a, args.p, args.methods, args.model, args.evaluate, args.max_examples, args.split)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    head = "| adapter | p | units kept / layer | retained | dense | compact | structured | structured folder |"
    print(head + (" method: score |" if args.evaluate else ""))
    print("|---" * (head.count("|") - 1 + bool(args.evaluate)) + "|")
    seen = set()
    for r in rows:
        key = (r["adapter"], r["p"])
        if key in seen:
            continue
        seen.add(key)
        name = Path(r["adapter"]).parent.parent.name if Path(r["adapter"]).name == "adapter" else r["adapter"]
        line = (
            f"| {name} | {r['p']:g} | {r['widths'][0] if len(set(r['widths'])) == 1 else r['widths']} | "
            f"{100 * r['retained']:.1f} % | {r['dense_bytes']:,} | {r['compact_bytes']:,} | "
            f"{r['structured_bytes']:,} | {r['structured_folder_bytes']:,} |"
        )
        if args.evaluate:
            scores = [s for s in rows if (s["adapter"], s["p"]) == key]
            line += " " + ", ".join(f"{s['method']} {100 * next(iter(s['score'].values())):.1f}" for s in scores) + " |"
        print(line)
    folders = {r["adapter"]: r["dense_folder_bytes"] for r in rows}
    print("\nunpruned folder bytes (weights, config, head): " + ", ".join(f"{a}: {n:,}" for a, n in folders.items()))


if __name__ == "__main__":
    main()
