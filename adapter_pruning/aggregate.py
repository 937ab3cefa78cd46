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

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

from .io import CorruptFileError, atomic_path, read_parquet, write_parquet
from .results import KEY as _KEY
from .results import SCHEMA, STATE

__all__ = [
    "MixedDevicesError",
    "POLICY",
    "PAIR",
    "check_policy",
    "check_devices",
    "check_precisions",
    "MixedPrecisionError",
    "collect",
    "load_results",
    "table1_frame",
    "table2_frame",
    "write_tables",
]

log = logging.getLogger(__name__)

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
    """The states to aggregate break the device policy (:data:`POLICY`): computed on different kinds
    of device (CPU and GPU), or the two sides of one paired comparison scored on different devices."""


class MixedPrecisionError(ValueError):
    """The states to aggregate were trained or scored in different precisions (fp32, bf16, tf32)."""


#: The device policy: how the rows of one results file may differ in the columns that say how a
#: state was computed, ``{column: (rule, flag)}``. Rules: ``"same"``: one value in every row (CPU and
#: GPU runs train and score differently, docs/benchmarks.md, and so do fp32 and bf16); ``"pair"``: one
#: value within each paired comparison (:data:`PAIR`: all methods of one pruning state, which
#: report_comparison pairs; a per_sweep job scores them in one process) and any number across the
#: results, each listed in a note (e.g. jobs of one grid that landed on A100 and H100 nodes);
#: ``"note"``: any values, listed in a note. Null values (an imported adapter has no training record)
#: are ignored. ``flag``: the config key (``report.<flag>``) that turns the column's refusals into
#: notes. The workflow keeps a run inside this policy before it starts (one planned device kind per
#: run, ``adapter_pruning.devices``; one precision per stage from the config; both in the rules'
#: params); this check is the backstop for results folders filled by several runs.
POLICY: dict[str, tuple[str, str]] = {
    "device": ("same", "allow_mixed_devices"),
    "train_device": ("same", "allow_mixed_devices"),
    "precision": ("same", "allow_mixed_precision"),
    "train_precision": ("same", "allow_mixed_precision"),
    "device_name": ("pair", "allow_mixed_devices"),
    "train_device_name": ("note", "allow_mixed_devices"),
}
#: The columns of one paired comparison: every method of one pruning state (the full model is a
#: reference, not a side of a pair).
PAIR = ("model", "task", "seed", "lam", "scope", "p")
_ERRORS = {"allow_mixed_devices": MixedDevicesError, "allow_mixed_precision": MixedPrecisionError}


def _state_examples(df: pl.DataFrame, n: int = 3) -> str:
    states = df.select("task", "seed", "scope", "method", "p").unique(maintain_order=True).head(n)
    rows = states.iter_rows(named=True)
    return ", ".join(f"{r['task']}/seed{r['seed']}/{r['scope'] or '-'}/{r['method']}/p{r['p']:g}" for r in rows)


def _values(df: pl.DataFrame, column: str) -> list[str]:
    """One line per distinct non-null value of ``column``: the value, its number of states, examples."""
    lines = []
    for (value,), part in df.filter(pl.col(column).is_not_null()).group_by(column, maintain_order=True):
        n = part.select(STATE).unique().height
        lines.append(f"{column} {value}: {n} state(s), e.g. {_state_examples(part)}")
    return lines


def check_policy(df: pl.DataFrame, *, policy: Mapping[str, tuple[str, str]] | None = None, **allow: bool) -> list[str]:
    """Check results rows against the device policy (:data:`POLICY`, or ``policy``); return the notes
    (one line per column whose values differ where the policy accepts it), or raise the flag's error
    (:class:`MixedDevicesError`, :class:`MixedPrecisionError`) naming every refused column with its
    values and example states. ``allow``: ``allow_mixed_devices=True``, ``allow_mixed_precision=True``
    turn that flag's refusals into notes. Columns absent from ``df`` are skipped."""
    policy = POLICY if policy is None else policy
    notes, refused = [], {}
    pruned = df.filter(pl.col("method") != "full")
    for column, (rule, flag) in policy.items():
        if column not in df.columns or df[column].drop_nulls().n_unique() <= 1:
            continue
        relaxed = bool(allow.get(flag, False))
        if rule == "same" and not relaxed:
            values = "\n    ".join(_values(df, column))
            refused.setdefault(flag, []).append(f"{column} differs between states (one value per file):\n    {values}")
            continue
        if rule == "pair" and not relaxed:
            split = (
                pruned.filter(pl.col(column).is_not_null())
                .group_by(list(PAIR))
                .agg(pl.col(column).n_unique().alias("n"), pl.col(column).unique().sort().alias("values"))
                .filter(pl.col("n") > 1)
                .sort(list(PAIR), nulls_last=False)
            )
            if split.height:
                ex = "; ".join(
                    f"{r['task']}/seed{r['seed']}/{r['scope']}/p{r['p']:g}: {', '.join(r['values'])}"
                    for r in split.head(3).iter_rows(named=True)
                )
                refused.setdefault(flag, []).append(
                    f"{column}: the methods of {split.height} paired comparison(s) were scored on different "
                    f"devices, e.g. {ex} (evaluation.mode: per_sweep scores all methods of a state in one job)"
                )
                continue
        how = "each paired comparison on one" if rule == "pair" and not relaxed else "accepted"
        n = df[column].drop_nulls().n_unique()
        notes.append(f"{column}: {n} values ({how}): " + "; ".join(_values(df, column)))
    for flag, lines in refused.items():
        raise _ERRORS.get(flag, ValueError)(
            f"the results break the device policy (docs/cluster.md; set report.{flag}: true to combine them "
            "anyway):\n  " + "\n  ".join(lines)
        )
    return notes


def _only(flag: str) -> dict[str, tuple[str, str]]:
    return {c: rule for c, rule in POLICY.items() if rule[1] == flag}


def check_devices(df: pl.DataFrame, *, allow_mixed: bool = False) -> list[str]:
    """:func:`check_policy` for the device columns (config ``report.allow_mixed_devices``)."""
    return check_policy(df, policy=_only("allow_mixed_devices"), allow_mixed_devices=allow_mixed)


def check_precisions(df: pl.DataFrame, *, allow_mixed: bool = False) -> list[str]:
    """:func:`check_policy` for ``precision`` and ``train_precision`` (config ``report.allow_mixed_precision``):
    a bf16 score and an fp32 score of the same state differ (docs/benchmarks.md, "bf16 compute")."""
    return check_policy(df, policy=_only("allow_mixed_precision"), allow_mixed_precision=allow_mixed)


def collect(
    paths: Iterable[str | Path],
    out_path: str | Path,
    *,
    pruned_dirs: Iterable[str | Path] = (),
    allow_mixed_devices: bool = False,
    allow_mixed_precision: bool = False,
) -> pl.DataFrame:
    """Concatenate score files into ``out_path``; each file is checked (schema, ranges) on read.

    ``pruned_dirs``: saved pruned adapters to verify first (checksums, zeros, the compact file and a
    unit-pruned state's structured adapter against their ``prune.json``, see
    :func:`adapter_pruning.artifacts.verify_pruned`, :func:`adapter_pruning.compact.verify_beside` and
    :func:`adapter_pruning.structured.verify_beside`); their counts and file sizes must equal those of
    the matching score rows. A truncated or modified file raises
    :class:`~adapter_pruning.io.CorruptFileError` naming it, and nothing is written. Results outside
    the policy (:data:`POLICY`, :func:`check_policy`: device kinds, precisions, pairs scored on
    different devices) are refused unless ``allow_mixed_devices`` / ``allow_mixed_precision``; what
    it accepts (e.g. two GPU models) is logged as a note.
    """
    from . import structured
    from .artifacts import verify_pruned
    from .compact import verify_beside

    infos = {}
    for d in pruned_dirs:
        info = verify_pruned(d)
        verify_beside(d, info)
        if "structured_sha256" in info:
            structured.verify_beside(d, info)
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
    notes = check_policy(df, allow_mixed_devices=allow_mixed_devices, allow_mixed_precision=allow_mixed_precision)
    for note in notes:
        log.info("note: %s", note)
    for row in df.unique(["model", "task", "seed", "lam", "scope", "method", "p"]).iter_rows(named=True):
        key = (row["model"], row["task"], row["seed"], row["lam"], row["scope"], row["method"], row["p"])
        if key in infos:
            d, info = infos[key]
            if (info["n_params"], info["n_pruned"]) != (row["n_params"], row["n_pruned"]):
                raise CorruptFileError(
                    f"{d}/prune.json: {info['n_pruned']} of {info['n_params']} pruned, but the score file says "
                    f"{row['n_pruned']} of {row['n_params']}; rerun that prune job"
                )
            sizes = ("dense_bytes", "compact_bytes", "structured_bytes")
            if tuple(info.get(k) for k in sizes) != tuple(row[k] for k in sizes):
                raise CorruptFileError(
                    f"{d}/prune.json: files of {', '.join(str(info.get(k)) for k in sizes)} bytes (dense, compact, "
                    f"structured), but the score file says {', '.join(str(row[k]) for k in sizes)}; rerun that "
                    "evaluation"
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
        pl.col("scope").is_in(["CN", "CU", "CB"]),
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
