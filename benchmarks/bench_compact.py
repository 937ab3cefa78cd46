"""Bytes of a pruned adapter under each storage encoding (issue 28; docs/benchmarks.md, "Compact pruned adapters").

For each trained adapter (a seed folder of a workflow run: ``<seed dir>/adapter/``,
``<seed dir>/tropical/optimized.safetensors`` and, for method ``activation``,
``<seed dir>/calibration/input_rms.safetensors``), each method, scope and ``p``, it prunes the adapter
as rule ``prune`` does (``masks.pruning_masks``, ``apply_masks``, original values) and measures the
pruned ``adapter.safetensors`` as:

* ``dense``: the file the workflow and ``load_adapter`` use (``safetensors``, float32);
* ``bitmask``, ``indices``, ``compact``: :mod:`adapter_pruning.compact` restricted to a packed bitmask
  per tensor, to an index list per tensor (smallest unsigned type), and choosing the smaller per
  tensor (the format's default); each a whole file, header and checksums included;
* ``zstd3``, ``zstd19``, ``zstd19c``: zstd (level 3, level 19) over the dense file, and zstd 19 over
  the compact file (libzstd as bundled with pyarrow, a dependency already);
* ``zlib9``, ``bz2_9``, ``lzma9e``: the standard library's compressors over the dense file;
* ``floor``: the kept values' bytes plus, per tensor, ``n · H(nnz / n)`` bits for their positions
  (the entropy of a random mask of that density), no header: the least any encoding that stores the
  values as they are and treats the positions as random can take (a compressor can go below it by
  compressing the values themselves).

Every encoding is measured for the unpruned adapter and for method tropical, scope CU at every
``p``; the other methods and scopes at ``--detail-p`` only, with the cheap encodings and zstd19. It
also times encoding and decoding one adapter (median of ``--repeat``): ``compact`` (to bytes, and
read back with both checksums), ``zstd19``, ``lzma9e``, and one ``prune`` sweep job's work (12
states) with and without the compact file (:func:`prune_timing`).

Usage: ``.venv/bin/python benchmarks/bench_compact.py SEED_DIR [...] [--p 98 96 ...]
[--methods ...] [--scopes ...] [--json out.json]``. Prints a markdown table: bytes per adapter at
each ``p`` for each encoding (mean over the adapters; method tropical, scope CU), then every method
and scope at ``--detail-p``, then the timings.
"""

from __future__ import annotations

import argparse
import bz2
import json
import lzma
import math
import statistics
import time
import zlib
from pathlib import Path

import pyarrow as pa
import torch
from safetensors.torch import save as st_save

from adapter_pruning import artifacts, compact, masks
from adapter_pruning.stages.prune import baseline_scores

P_DEFAULT = (99, 98, 96, 94, 90, 80, 60, 50)
ENCODINGS = (
    "dense",
    "bitmask",
    "indices",
    "compact",
    "zstd3",
    "zstd19",
    "zstd19c",
    "zlib9",
    "bz2_9",
    "lzma9e",
    "floor",
)


def _zstd(data: bytes, level: int) -> int:
    return len(pa.Codec("zstd", compression_level=level).compress(data, asbytes=True))


def _floor(tensors: dict) -> int:
    bits = 0.0
    for t in tensors.values():
        n = t.numel()
        nnz = int((t.reshape(-1) != 0).sum())
        q = nnz / n if n else 0.0
        h = 0.0 if q in (0.0, 1.0) else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))
        bits += n * h + 8 * nnz * t.element_size()
    return math.ceil(bits / 8)


def sizes(tensors: dict, metadata: dict, *, every: bool = True) -> dict[str, int]:
    """Bytes of ``tensors`` (one adapter file's contents) under every encoding of the module docstring
    (``every=False``: dense, bitmask, indices, compact and zstd19 only)."""
    dense = st_save(tensors, metadata=metadata)
    comp = compact.to_bytes(tensors, metadata=metadata)
    if not every:
        return {
            "dense": len(dense),
            "bitmask": len(compact.to_bytes(tensors, metadata=metadata, encodings=("dense", "bitmask"))),
            "indices": len(compact.to_bytes(tensors, metadata=metadata, encodings=("dense", "indices"))),
            "compact": len(comp),
            "zstd19": _zstd(dense, 19),
        }
    return {
        "dense": len(dense),
        "bitmask": len(compact.to_bytes(tensors, metadata=metadata, encodings=("dense", "bitmask"))),
        "indices": len(compact.to_bytes(tensors, metadata=metadata, encodings=("dense", "indices"))),
        "compact": len(comp),
        "zstd3": _zstd(dense, 3),
        "zstd19": _zstd(dense, 19),
        "zstd19c": _zstd(comp, 19),
        "zlib9": len(zlib.compress(dense, 9)),
        "bz2_9": len(bz2.compress(dense, 9)),
        "lzma9e": len(lzma.compress(dense, preset=9 | lzma.PRESET_EXTREME)),
        "floor": _floor(tensors),
    }


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def timings(tensors: dict, metadata: dict, repeat: int) -> dict[str, float]:
    """Encode/decode wall times (ms) of one adapter's tensors."""
    dense = st_save(tensors, metadata=metadata)
    comp = compact.to_bytes(tensors, metadata=metadata)
    z = pa.Codec("zstd", compression_level=19)
    zc = z.compress(dense, asbytes=True)
    xz = lzma.compress(dense, preset=9 | lzma.PRESET_EXTREME)
    tmp = Path("benchmarks/out")
    tmp.mkdir(parents=True, exist_ok=True)
    f = tmp / "bench_compact.safetensors"
    f.write_bytes(comp)
    return {
        "compact_encode_ms": _median_ms(lambda: compact.to_bytes(tensors, metadata=metadata), repeat),
        "compact_decode_ms": _median_ms(lambda: compact.load(f), repeat),
        "zstd19_encode_ms": _median_ms(lambda: z.compress(dense, asbytes=True), repeat),
        "zstd19_decode_ms": _median_ms(lambda: z.decompress(zc, len(dense), asbytes=True), repeat),
        "lzma9e_encode_ms": _median_ms(lambda: lzma.compress(dense, preset=9 | lzma.PRESET_EXTREME), repeat),
        "lzma9e_decode_ms": _median_ms(lambda: lzma.decompress(xz), repeat),
    }


def prune_timing(seed_dir: Path, repeat: int) -> dict[str, float]:
    """Wall seconds of one ``prune`` sweep job's work (``stages.prune.prune_sweep``: standard and tropical
    at the default config's six ``p``, scope CU) with the compact file, and with ``compact.write_beside``
    and ``compact.verify_beside`` replaced by no-ops (what the job did before); median of ``repeat``."""
    import shutil
    import tempfile

    from adapter_pruning.stages import prune

    ps = [98.0, 96.0, 94.0, 90.0, 80.0, 60.0]
    ids = {"model": "minilm", "task": seed_dir.parent.name, "seed": 0, "lam": 0.25, "scope": "CU"}

    def run():
        tmp = Path(tempfile.mkdtemp(dir="benchmarks/out"))
        try:
            t0 = time.perf_counter()
            prune.prune_sweep(
                ids,
                ["standard", "tropical"],
                ps,
                seed_dir / "adapter",
                seed_dir / "tropical" / "optimized.safetensors",
                [tmp / m / f"p{p:g}" for m in ("standard", "tropical") for p in ps],
                threads=1,
            )
            return time.perf_counter() - t0
        finally:
            shutil.rmtree(tmp)

    Path("benchmarks/out").mkdir(parents=True, exist_ok=True)
    with_compact = statistics.median(run() for _ in range(repeat))
    saved = compact.write_beside, compact.verify_beside
    compact.write_beside, compact.verify_beside = (lambda d, verify=True: {}), (lambda d, info=None: None)
    try:
        without = statistics.median(run() for _ in range(repeat))
    finally:
        compact.write_beside, compact.verify_beside = saved
    return {"prune_sweep_s_with_compact": with_compact, "prune_sweep_s_without": without}


def measure(seed_dir: Path, ps, methods, scopes, detail_p: float) -> list[dict]:
    """Rows of sizes: every encoding for the unpruned adapter and Tropical CU at every ``p``; the cheap
    ones for every other method and scope at ``detail_p``."""
    adapter = seed_dir / "adapter"
    state, name = artifacts.read_adapter_state(adapter)
    with open(adapter / "adapter.safetensors", "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        metadata = json.loads(fh.read(n)).get("__metadata__")
    layers = masks.extract_layers(state, name)
    optimized = artifacts.read_optimized(seed_dir / "tropical" / "optimized.safetensors", layers)
    calib = seed_dir / "calibration" / "input_rms.safetensors"
    input_rms = artifacts.read_input_rms(calib, layers) if calib.is_file() else None
    scores = {}
    for m in methods:
        if m == "activation" and input_rms is None:
            continue
        scores.update(baseline_scores(m, layers, seed=0, input_rms=input_rms))
    rows = [
        {"adapter": str(seed_dir), "method": "full", "scope": None, "p": 0.0, "retained": 1.0, **sizes(state, metadata)}
    ]
    for scope in scopes:
        for p in ps:
            if scope != "CU" and p != detail_p:
                continue
            got = masks.pruning_masks(layers, optimized, p, scope, scores=scores)
            for method in methods:
                every = (method, scope) == ("tropical", "CU")
                if method not in got or (not every and p != detail_p):
                    continue
                chosen = got[method]
                pruned = masks.apply_masks(layers, chosen)
                tensors = {**state, **masks.layers_to_state_dict(pruned)}
                n_params = sum(m.n_params for m in chosen)
                n_pruned = sum(m.n_pruned for m in chosen)
                rows.append(
                    {
                        "adapter": str(seed_dir),
                        "method": method,
                        "scope": scope,
                        "p": float(p),
                        "retained": 1 - n_pruned / n_params,
                        **sizes(tensors, metadata, every=every),
                    }
                )
    return rows


def _table(rows, header, cols) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seed_dirs", nargs="+", type=Path)
    ap.add_argument("--p", nargs="+", type=float, default=list(P_DEFAULT))
    ap.add_argument("--methods", nargs="+", default=["tropical", "standard", "random", "activation"])
    ap.add_argument("--scopes", nargs="+", default=["CU", "CB", "CN"])
    ap.add_argument("--detail-p", type=float, default=90.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for d in args.seed_dirs:
        rows += measure(d, args.p, args.methods, args.scopes, args.detail_p)

    def mean_of(sel):
        return {e: statistics.mean(r[e] for r in sel) for e in (*ENCODINGS, "retained") if e in sel[0]}

    main_rows = []
    for p in [0.0, *args.p]:
        sel = [r for r in rows if r["p"] == p and (p == 0.0 or (r["method"], r["scope"]) == ("tropical", "CU"))]
        m = mean_of(sel)
        main_rows.append(
            {
                "p": "full" if p == 0 else f"{p:g}",
                "retained": f"{100 * m['retained']:.1f} %",
                **{e: f"{m[e]:,.0f}" for e in ENCODINGS},
                "ratio": f"{m['dense'] / m['compact']:.1f}x",
            }
        )
    print(f"# bytes per adapter (mean over {len(args.seed_dirs)} adapters; tropical, CU)\n")
    print(_table(main_rows, ["p", "retained", *ENCODINGS, "dense/compact"], ["p", "retained", *ENCODINGS, "ratio"]))
    detail = []
    for scope in args.scopes:
        for method in args.methods:
            sel = [r for r in rows if r["p"] == args.detail_p and r["scope"] == scope and r["method"] == method]
            if sel:
                m = mean_of(sel)
                detail.append(
                    {
                        "scope": scope,
                        "method": method,
                        "retained": f"{100 * m['retained']:.1f} %",
                        **{e: f"{m[e]:,.0f}" for e in ("dense", "bitmask", "indices", "compact", "zstd19")},
                    }
                )
    cols = ["scope", "method", "retained", "dense", "bitmask", "indices", "compact", "zstd19"]
    print(f"\n# p = {args.detail_p:g}, every scope and method (mean over the adapters)\n")
    print(_table(detail, cols, cols))
    state, _ = artifacts.read_adapter_state(args.seed_dirs[0] / "adapter")
    layers = masks.extract_layers(state, artifacts.read_adapter_state(args.seed_dirs[0] / "adapter")[1])
    opt = artifacts.read_optimized(args.seed_dirs[0] / "tropical" / "optimized.safetensors", layers)
    chosen = masks.pruning_masks(layers, opt, args.detail_p, "CU")["tropical"]
    tensors = {**state, **masks.layers_to_state_dict(masks.apply_masks(layers, chosen))}
    t = timings(tensors, {"format": "pt"}, args.repeat)
    t.update(prune_timing(args.seed_dirs[0], args.repeat))
    print(f"\n# one adapter at p = {args.detail_p:g} (tropical, CU), median of {args.repeat} (ms)\n")
    print("\n".join(f"{k}: {v:.1f}" if k.endswith("_ms") else f"{k}: {v:.2f}" for k, v in t.items()))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "timings": t}, indent=1))


if __name__ == "__main__":
    main()
