"""End-of-run summary, printed by the Snakefile's ``onsuccess`` handler.

After a successful (non-dry) run the terminal shows where ``results.parquet``, the tables and the
figures are, the command that builds the HTML report, and the headline comparison: Table 1
(``<results>/summary/table1.md``) as written. Snakemake calls ``onsuccess`` only after real runs
(not after ``-n``, and not when there was nothing to do). :func:`print_run_summary` never raises:
a failure is printed as a warning, and the run still succeeds.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["print_run_summary", "report_command", "summary_text"]

RULE = "=" * 100


def _shown(path: str | Path, base: str | Path | None) -> str:
    """``path`` relative to ``base`` when it lies inside it (shorter to read and paste), else absolute."""
    path = Path(path).absolute()
    if base is not None:
        try:
            return str(path.relative_to(Path(base).absolute()))
        except ValueError:
            pass
    return str(path)


def _first_heading(md: Path) -> str:
    """The first line of a Markdown file without its ``#`` marks ('' when empty or unreadable)."""
    try:
        with md.open(encoding="utf-8") as fh:
            return fh.readline().strip().lstrip("#").strip()
    except OSError:
        return ""


def _row_count(parquet: Path) -> int | None:
    """Rows of a Parquet file, read from its footer (None when it cannot be read)."""
    try:
        import pyarrow.parquet as pq

        return pq.read_metadata(parquet).num_rows
    except Exception:  # noqa: BLE001 - a row count is a nicety; the path is what matters
        return None


def _device_notes(parquet: Path) -> list[str]:
    """The device policy's notes on ``results.parquet`` (:func:`adapter_pruning.aggregate.check_policy`:
    e.g. states scored on two GPU models; what a ``report.allow_mixed_*`` flag let through counts as
    accepted); [] when there are none or the file cannot be read."""
    try:
        import polars as pl

        from .aggregate import POLICY, check_policy

        df = pl.read_parquet(parquet)
        try:
            return check_policy(df)
        except ValueError:
            return check_policy(df, **{flag: True for _, flag in POLICY.values()})
    except Exception:  # noqa: BLE001 - a note is a nicety
        return []


def summary_text(
    results_dir: str | Path, *, base: str | Path | None = None, report_cmd: str = "snakemake --report report.html"
) -> str:
    """The end-of-run summary for the results folder ``results_dir`` (the config's ``results``).

    Lists ``summary/results.parquet`` (with its row count), every ``summary/table*.md`` and
    ``summary/comparison*.md`` (with its title; ``.csv``/``.tex`` beside it), the figures in
    ``summary/figures/`` (per-task ones as ``methods/<task>``; a folder of per-pair figures as
    ``delta/<task>/* (<count>)``), the report command, the device policy's notes (e.g. states scored
    on two GPU models), and then Table 1 as written in ``summary/table1.md``. Paths are shown
    relative to ``base`` when inside it, else absolute. When the run made no ``results.parquet`` (a
    partial target), says so in one line.
    """
    summary = Path(results_dir) / "summary"
    parquet = summary / "results.parquet"
    if not parquet.is_file():
        return f"No results summary: {_shown(parquet, base)} does not exist (this run made only part of the workflow)."
    lines = [RULE, "Finished. Results:"]
    rows = _row_count(parquet)
    what = "one row per evaluated state, split and metric"
    lines.append(f"  {_shown(parquet, base)}   {what}" + (f" ({rows:,} rows)" if rows is not None else ""))
    for md in sorted(summary.glob("table*.md")) + sorted(summary.glob("comparison*.md")):
        others = [ext for ext in ("csv", "tex") if md.with_suffix(f".{ext}").is_file()]
        also = f" (also .{', .'.join(others)})" if others else ""
        lines.append(f"  {_shown(md, base)}   {_first_heading(md) or md.stem}{also}")
    figures = summary / "figures"
    if figures.is_dir():
        files = [f for f in figures.rglob("*") if f.is_file()]
        names = sorted({f.relative_to(figures).with_suffix("").as_posix() for f in files})
        # a folder of per-pair figures (delta/<task>/<target>_vs_<reference>) as one entry with a count
        deep: dict[str, int] = {}
        for name in names:
            if name.count("/") >= 2:
                folder = name.rsplit("/", 1)[0]
                deep[folder] = deep.get(folder, 0) + 1
        names = sorted({n for n in names if n.count("/") < 2} | {f"{d}/* ({c})" for d, c in deep.items()})
        kinds = sorted({f.suffix for f in files if f.suffix})
        lines.append(
            f"  {_shown(figures, base)}{os.sep}   figures: {', '.join(names) or 'none'}"
            + (f" ({', '.join(kinds)})" if kinds else "")
        )
    lines.append(f"  HTML report with every table and figure:  {report_cmd}")
    lines += [f"  Note (device policy, docs/cluster.md): {note}" for note in _device_notes(parquet)]
    table1 = summary / "table1.md"
    if table1.is_file():
        lines += ["", table1.read_text(encoding="utf-8").rstrip()]
    lines.append(RULE)
    return "\n".join(lines)


def report_command(
    snakemake: str,
    *,
    snakefile: str | Path | None = None,
    directory: str | Path | None = None,
    configfiles: Sequence[str | Path] = (),
    config_args: Sequence[str] = (),
    base: str | Path | None = None,
) -> str:
    """The ``snakemake --report report.html`` command that reports on the same run.

    Repeats what selects the run's outputs: ``--snakefile`` and ``--directory`` when given, and the
    run's ``--configfile`` files and ``--config`` arguments. Paths are shown as by :func:`summary_text`.
    """
    parts = [snakemake]
    if snakefile is not None:
        parts += ["--snakefile", shlex.quote(_shown(snakefile, base))]
    if directory is not None:
        parts += ["--directory", shlex.quote(_shown(directory, base))]
    if configfiles:
        parts += ["--configfile", *(shlex.quote(_shown(f, base)) for f in configfiles)]
    if config_args:
        parts += ["--config", *(shlex.quote(str(a)) for a in config_args)]
    return " ".join(parts + ["--report", "report.html"])


def _snakemake_executable(base: str | Path | None) -> str:
    """The ``snakemake`` script beside this Python (e.g. ``.venv/bin/snakemake``), else ``python -m snakemake``."""
    script = Path(sys.executable).parent / "snakemake"
    if script.is_file():
        return shlex.quote(_shown(script, base))
    return f"{shlex.quote(_shown(sys.executable, base))} -m snakemake"


def print_run_summary(config: Mapping[str, Any], workflow: Any = None, *, stream: TextIO | None = None) -> bool:
    """Print :func:`summary_text` for a finished run; True when printed, False after a warning.

    ``config`` is the run's config (``results`` = results folder, relative to the working
    directory); ``workflow`` is Snakemake's workflow object, from which the report command takes the
    Snakefile and the ``--configfile``/``--config`` arguments (omitted when None). When the working
    directory is the workflow's own folder, paths are shown relative to it (as a user who ran
    ``snakemake`` there types them); otherwise (``--directory``) they are absolute and the report
    command names the Snakefile and the directory. Never raises: any error becomes one warning line
    on stderr.
    """
    stream = sys.stdout if stream is None else stream
    try:
        workdir = Path.cwd()
        basedir = getattr(workflow, "basedir", None)
        at_home = basedir is not None and Path(basedir).resolve() == workdir.resolve()
        base = workdir if at_home or workflow is None else None
        settings = getattr(workflow, "config_settings", None)
        cmd = report_command(
            _snakemake_executable(base),
            snakefile=None if at_home or workflow is None else workflow.main_snakefile,
            directory=None if at_home or workflow is None else workdir,
            configfiles=list(getattr(workflow, "overwrite_configfiles", None) or ()),
            config_args=list(getattr(settings, "config_args", None) or ()),
            base=base,
        )
        text = summary_text(config["results"], base=base, report_cmd=cmd)
        print(text, file=stream, flush=True)
        return True
    except Exception as exc:  # noqa: BLE001 - the summary must never fail a finished run
        print(
            f"WARNING: could not print the end-of-run summary ({type(exc).__name__}: {exc}); "
            "the outputs are in the folder named by the config key 'results'.",
            file=sys.stderr,
            flush=True,
        )
        return False
