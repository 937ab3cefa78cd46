"""Aggregation: per-state score files -> ``results.parquet`` -> the paper's Tables 1 and 2.

``results.parquet`` has one row per evaluated state, split and metric, with the columns of
:data:`adapter_pruning.results.SCHEMA`; the unpruned model has ``method = "full"``,
``scope = null``, ``p = 0`` and ``retained = 1``. ``score`` and ``retained`` are in 0..1; the
tables print percentages like the paper.

Table 1 (per task, scope ``table_scope``, test split, the task's primary metric): columns are the
pruning states ordered by retained share; rows Standard, Tropical, Combined and the full model
(FM). **Combined** picks, per (task, seed, p), whichever of Standard and Tropical scores higher on
the *validation* split and reports that method's *test* score; a tie goes to Standard (the
baseline), so Combined never claims a win it did not earn. With several seeds every cell is
mean ± std (sample std) over seeds; ``*`` marks the better of Standard/Tropical in a column.

Table 2 (task ``table2_task``): Standard and Tropical under the CN, CU and CB scopes, columns by
requested pruning percentage ``p``; each cell gives the test score and the retained share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

from .io import CorruptFileError, atomic_path, read_parquet, write_parquet
from .results import KEY as _KEY
from .results import SCHEMA

__all__ = [
    "MixedDevicesError",
    "check_devices",
    "check_precisions",
    "MixedPrecisionError",
    "collect",
    "load_results",
    "table1_frame",
    "table2_frame",
    "write_tables",
]

_LABEL = {"standard": "Standard", "tropical": "Tropical"}


def _check(df: pl.DataFrame, path) -> pl.DataFrame:
    bad = df.filter(
        ~pl.col("score").is_between(0, 1)
        | ~pl.col("retained").is_between(0, 1)
        | (pl.col("n_pruned") < 0)
        | (pl.col("n_pruned") > pl.col("n_params"))
        | pl.col("score").is_null()
    )
    if bad.height:
        raise CorruptFileError(
            f"{path}: {bad.height} row(s) with out-of-range score/retained/counts, e.g. {bad.row(0, named=True)}"
        )
    return df


class MixedDevicesError(ValueError):
    """The states to aggregate were evaluated on different kinds of device (e.g. CPU and a GPU)."""


class MixedPrecisionError(ValueError):
    """The states to aggregate were trained or scored in different precisions (fp32, bf16, tf32)."""


def _mixed_lines(df: pl.DataFrame, columns: list[str]) -> list[str]:
    """One line per distinct value of ``columns``: the value, how many states have it, three examples."""
    kinds = df.group_by(columns, maintain_order=True).agg(pl.struct("task", "seed", "scope", "method", "p").unique())
    lines = []
    for row in kinds.iter_rows(named=True):
        states = row["task"]
        ex = ", ".join(f"{s['task']}/seed{s['seed']}/{s['scope'] or '-'}/{s['method']}/p{s['p']:g}" for s in states[:3])
        value = ", ".join(f"{c} {row[c]}" for c in columns)
        lines.append(f"{value}: {len(states)} state(s), e.g. {ex}")
    return lines


def check_devices(df: pl.DataFrame, *, allow_mixed: bool = False) -> None:
    """Refuse results evaluated on more than one kind of device (``device`` column: ``cpu`` or
    ``cuda:<GPU name>``): CPU and GPU runs train and score differently (docs/benchmarks.md), so their
    states do not belong in one table or comparison. The message names the kinds and example states;
    ``allow_mixed=True`` (config ``report.allow_mixed_devices``) accepts them."""
    if allow_mixed or df["device"].n_unique() <= 1:
        return
    raise MixedDevicesError(
        "the results were evaluated on different kinds of device, which do not belong in one table (set "
        "report.allow_mixed_devices: true to combine them anyway):\n  " + "\n  ".join(_mixed_lines(df, ["device"]))
    )


def check_precisions(df: pl.DataFrame, *, allow_mixed: bool = False) -> None:
    """Refuse results whose states were scored (``precision``) or their adapters trained
    (``train_precision``) in more than one precision: a bf16 score and an fp32 score of the same state
    differ (docs/benchmarks.md, "bf16 compute"), so they do not belong in one table or paired
    comparison. An imported adapter's unknown training precision (null) is not a precision of its own.
    The message names the precisions and example states; ``allow_mixed=True`` (config
    ``report.allow_mixed_precision``) accepts them."""
    columns = ["precision", "train_precision"]
    # an adapter imported from elsewhere has no training precision (null): it mixes with any
    known = df.filter(pl.col("train_precision").is_not_null())
    if allow_mixed or (df["precision"].n_unique() <= 1 and known["train_precision"].n_unique() <= 1):
        return
    raise MixedPrecisionError(
        "the results were trained or scored in different precisions, which do not belong in one table (set "
        "report.allow_mixed_precision: true to combine them anyway):\n  " + "\n  ".join(_mixed_lines(df, columns))
    )


def collect(
    paths: Iterable[str | Path],
    out_path: str | Path,
    *,
    pruned_dirs: Iterable[str | Path] = (),
    allow_mixed_devices: bool = False,
    allow_mixed_precision: bool = False,
) -> pl.DataFrame:
    """Concatenate score files into ``out_path``; each file is checked (schema, ranges) on read.

    ``pruned_dirs``: saved pruned adapters to verify first (checksums, zeros and the compact file
    against their ``prune.json``, see :func:`adapter_pruning.artifacts.verify_pruned` and
    :func:`adapter_pruning.compact.verify_beside`); their counts and file sizes must equal those of
    the matching score rows. A truncated or modified file raises
    :class:`~adapter_pruning.io.CorruptFileError` naming it, and nothing is written. States
    evaluated on different device kinds are refused (:func:`check_devices`) unless
    ``allow_mixed_devices``, and states trained or scored in different precisions
    (:func:`check_precisions`) unless ``allow_mixed_precision``.
    """
    from .artifacts import verify_pruned
    from .compact import verify_beside

    infos = {}
    for d in pruned_dirs:
        info = verify_pruned(d)
        verify_beside(d, info)
        lam = None if info.get("lam") is None else float(info["lam"])
        key = (info["model"], info["task"], int(info["seed"]), lam, info["scope"], info["method"], float(info["p"]))
        infos[key] = (
            d,
            info,
        )
    frames = []
    for path in paths:
        df = read_parquet(path, required_columns=SCHEMA)
        frames.append(_check(df.select(list(SCHEMA)), path))
    if not frames:
        raise ValueError("no score files to aggregate")
    df = pl.concat(frames).sort(_KEY, nulls_last=False)
    dup = df.filter(df.select(_KEY).is_duplicated())
    if dup.height:
        raise ValueError(f"duplicate result rows, e.g. {dup.row(0, named=True)}")
    check_devices(df, allow_mixed=allow_mixed_devices)
    check_precisions(df, allow_mixed=allow_mixed_precision)
    for row in df.unique(["model", "task", "seed", "lam", "scope", "method", "p"]).iter_rows(named=True):
        key = (row["model"], row["task"], row["seed"], row["lam"], row["scope"], row["method"], row["p"])
        if key in infos:
            d, info = infos[key]
            if (info["n_params"], info["n_pruned"]) != (row["n_params"], row["n_pruned"]):
                raise CorruptFileError(
                    f"{d}/prune.json: {info['n_pruned']} of {info['n_params']} pruned, but the score file says "
                    f"{row['n_pruned']} of {row['n_params']}; rerun that prune job"
                )
            if (info["dense_bytes"], info["compact_bytes"]) != (row["dense_bytes"], row["compact_bytes"]):
                raise CorruptFileError(
                    f"{d}/prune.json: files of {info['dense_bytes']} and {info['compact_bytes']} bytes, but the score "
                    f"file says {row['dense_bytes']} and {row['compact_bytes']}; rerun that evaluation"
                )
    write_parquet(df, out_path)
    return df


def load_results(path: str | Path) -> pl.DataFrame:
    """Read and check ``results.parquet``."""
    return _check(read_parquet(path, required_columns=SCHEMA), path)


def select_lam(results: pl.DataFrame, lam: float | None) -> pl.DataFrame:
    """The full-model rows and the pruned states of tropical λ ``lam`` (every row when ``lam`` is None)."""
    if lam is None:
        return results
    return results.filter(pl.col("lam").is_null() | (pl.col("lam") == float(lam)))


def _agg(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return df.group_by(by, maintain_order=True).agg(
        pl.col("score").mean().alias("mean"),
        pl.col("score").std().alias("std"),
        pl.col("retained").mean().alias("retained"),
        pl.len().alias("n_seeds"),
    )


def table1_frame(results: pl.DataFrame, scope: str = "CU") -> pl.DataFrame:
    """Long-format Table 1: task, row, p, retained, mean, std, n_seeds, chosen (Combined only)."""
    prim = results.filter(pl.col("primary"))
    pruned = prim.filter(pl.col("scope") == scope, pl.col("method").is_in(["standard", "tropical"]))
    test = pruned.filter(pl.col("split") == "test")
    out = [
        _agg(test, ["task", "method", "p"])
        .with_columns(pl.col("method").replace_strict(_LABEL, default=None).alias("row"))
        .drop("method")
    ]
    # Combined: choose on validation, report on test.
    wide = pruned.pivot(on="split", index=["task", "seed", "p", "method", "retained"], values="score")
    if {"validation", "test"} <= set(wide.columns):
        val = wide.pivot(on="method", index=["task", "seed", "p"], values="validation")
        tst = wide.pivot(on="method", index=["task", "seed", "p"], values="test")
        if {"standard", "tropical"} <= set(val.columns):
            ret = wide.group_by(["task", "seed", "p"]).agg(pl.col("retained").mean())
            comb = (
                val.rename({"standard": "val_s", "tropical": "val_t"})
                .join(tst.rename({"standard": "test_s", "tropical": "test_t"}), on=["task", "seed", "p"])
                .join(ret, on=["task", "seed", "p"])
                .with_columns(
                    pl.when(pl.col("val_t") > pl.col("val_s"))
                    .then(pl.lit("tropical"))
                    .otherwise(pl.lit("standard"))
                    .alias("chosen")
                )
                .with_columns(
                    pl.when(pl.col("chosen") == "tropical")
                    .then(pl.col("test_t"))
                    .otherwise(pl.col("test_s"))
                    .alias("score")
                )
                .sort(["task", "p", "seed"])
            )
            out.append(
                comb.group_by(["task", "p"], maintain_order=True)
                .agg(
                    pl.col("score").mean().alias("mean"),
                    pl.col("score").std().alias("std"),
                    pl.col("retained").mean().alias("retained"),
                    pl.len().alias("n_seeds"),
                    pl.col("chosen").str.join(",").alias("chosen"),
                )
                .with_columns(pl.lit("Combined").alias("row"))
            )
    full = prim.filter(pl.col("method") == "full", pl.col("split") == "test")
    out.append(_agg(full, ["task", "p"]).with_columns(pl.lit("FM").alias("row")))
    cols = ["task", "row", "p", "retained", "mean", "std", "n_seeds", "chosen"]
    frames = [f.with_columns(pl.lit(None, pl.String).alias("chosen")) if "chosen" not in f.columns else f for f in out]
    df = pl.concat([f.select(cols) for f in frames], how="vertical_relaxed")
    order = {"Standard": 0, "Tropical": 1, "Combined": 2, "FM": 3}
    tasks = list(dict.fromkeys(results["task"].to_list()))
    return (
        df.with_columns(
            pl.col("row").replace_strict(order, return_dtype=pl.Int64).alias("_r"),
            pl.col("task").replace_strict({t: i for i, t in enumerate(tasks)}, return_dtype=pl.Int64).alias("_t"),
        )
        .sort(["_t", "_r", "p"], descending=[False, False, True])
        .drop("_r", "_t")
    )


def table2_frame(results: pl.DataFrame, task: str = "rotten_tomatoes") -> pl.DataFrame:
    """Long-format Table 2: method, scope, p, retained, mean, std, n_seeds (test, primary metric)."""
    df = results.filter(
        pl.col("primary"),
        pl.col("task") == task,
        pl.col("split") == "test",
        pl.col("method").is_in(["standard", "tropical"]),
    )
    agg = _agg(df, ["method", "scope", "p"])
    scope_order = {"CN": 0, "CU": 1, "CB": 2}
    return (
        agg.with_columns(pl.col("scope").replace_strict(scope_order, return_dtype=pl.Int64).alias("_s"))
        .sort(["method", "_s", "p"], descending=[False, False, True])
        .drop("_s")
        .with_columns(pl.lit(task).alias("task"))
        .select("task", "method", "scope", "p", "retained", "mean", "std", "n_seeds")
    )


def _cell(mean, std, n) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    s = f"{100 * mean:.2f}"
    if n and n > 1 and std is not None and not math.isnan(std):
        s += f" ± {100 * std:.2f}"
    return s


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _tex_escape(s: str) -> str:
    return s.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$").replace("*", r"$^{*}$").replace("–", "--")


def _tex(header: list[str], rows: list[list[str]], caption: str) -> str:
    spec = "l" + "r" * (len(header) - 1)
    body = [" & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    body += [" & ".join(_tex_escape(c) for c in r) + r" \\" for r in rows]
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            rf"\caption{{{_tex_escape(caption)}}}",
            r"\end{table}",
            "",
        ]
    )


def _table1_blocks(t1: pl.DataFrame):
    """Per task: header (retained % per state) and rows, like the paper's Table 1."""
    for task in dict.fromkeys(t1["task"].to_list()):
        d = t1.filter(pl.col("task") == task)
        pruned = d.filter(pl.col("row") != "FM")
        ps = pruned.select("p", "retained").unique("p").sort("retained")
        p_order = ps["p"].to_list()
        header = [task] + [_pct(r) for r in ps["retained"].to_list()] + ["FM"]
        fm = d.filter(pl.col("row") == "FM")
        fm_cell = _cell(*fm.select("mean", "std", "n_seeds").row(0)) if fm.height else "–"
        cells = {(r["row"], r["p"]): r for r in pruned.iter_rows(named=True)}
        rows = []
        for name in ("Standard", "Tropical", "Combined"):
            row = [name]
            for p in p_order:
                r = cells.get((name, p))
                c = _cell(r["mean"], r["std"], r["n_seeds"]) if r else "–"
                if name in ("Standard", "Tropical") and r:
                    other = cells.get(("Tropical" if name == "Standard" else "Standard", p))
                    if other and r["mean"] is not None and other["mean"] is not None and r["mean"] > other["mean"]:
                        c += "*"
                row.append(c)
            row.append(fm_cell if name == "Tropical" else "")
            rows.append(row)
        yield task, header, rows


def write_tables(
    results_path,
    table1: Mapping[str, str | Path],
    table2: Mapping[str, str | Path],
    *,
    table_scope: str = "CU",
    table2_task: str = "rotten_tomatoes",
    lam: float | None = None,
) -> None:
    """Write Table 1 and Table 2 as Markdown (``md``), CSV (``csv``, long format) and LaTeX (``tex``),
    for the pruned states of tropical λ ``lam`` (every state when None; ``report.table_lam``)."""
    results = select_lam(load_results(results_path), lam)
    t1 = table1_frame(results, scope=table_scope)
    t2 = table2_frame(results, task=table2_task)

    with atomic_path(table1["csv"]) as tmp:
        t1.write_csv(tmp)
    md, tex = [f"# Table 1: retained adapter parameters vs score (scope {table_scope}, test split, ×100)\n"], []
    for task, header, rows in _table1_blocks(t1):
        md += [_md(header, rows), ""]
        tex.append(
            _tex(
                header,
                rows,
                f"{task}: test score (x100) at each retained share of adapter parameters, scope {table_scope}",
            )
        )
    md.append(
        "Combined = the better of Standard/Tropical on validation, reported on test (ties: Standard). "
        "`*` = better of Standard/Tropical. Mean ± std over seeds where there are several."
    )
    with atomic_path(table1["md"]) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    with atomic_path(table1["tex"]) as tmp:
        tmp.write_text("\n".join(tex) if tex else "% no results\n")

    with atomic_path(table2["csv"]) as tmp:
        t2.write_csv(tmp)
    if t2.height:
        ps = sorted(set(t2["p"].to_list()), reverse=True)
        header = [table2_task] + [f"p={p:g}%" for p in ps]
        cells = {(r["method"], r["scope"], r["p"]): r for r in t2.iter_rows(named=True)}
        rows = []
        for method in ("standard", "tropical"):
            for scope in ("CN", "CU", "CB"):
                if not any((method, scope, p) in cells for p in ps):
                    continue
                row = [f"{method[0].upper()}-{scope}"]
                for p in ps:
                    r = cells.get((method, scope, p))
                    row.append(f"{_cell(r['mean'], r['std'], r['n_seeds'])} ({_pct(r['retained'])})" if r else "–")
                rows.append(row)
        md2 = (
            f"# Table 2: {table2_task}, Standard (S) / Tropical (T) × scopes CN/CU/CB "
            "(test score ×100, retained share in parentheses)\n\n" + _md(header, rows) + "\n"
        )
        tex2 = _tex(header, rows, f"{table2_task}: S/T x CN/CU/CB, test score (x100) and retained share")
    else:
        md2 = f"# Table 2\n\nNo pruning results for task {table2_task!r} in this run.\n"
        tex2 = f"% no pruning results for task {table2_task}\n"
    with atomic_path(table2["md"]) as tmp:
        tmp.write_text(md2)
    with atomic_path(table2["tex"]) as tmp:
        tmp.write_text(tex2)
