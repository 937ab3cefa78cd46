"""Job logging for the workflow's scripts: everything a job prints or logs goes to its Snakemake log.

Standard library only, so that it costs nothing to import and editing it does not change any
result-defining code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

__all__ = ["logged", "log", "exit_now"]

log = logging.getLogger("adapter_pruning")


@contextlib.contextmanager
def logged(log_path: str | Path) -> Iterator[logging.Logger]:
    """Send logging, warnings, stdout and stderr of a job to ``log_path``; log any traceback there.

    The exception still propagates, so Snakemake marks the job failed and names this log.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "a", buffering=1)
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = fh
    start = time.perf_counter()
    try:
        yield log
        log.info("done in %.1f s", time.perf_counter() - start)
    except BaseException:
        fh.write(traceback.format_exc())
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        root.removeHandler(handler)
        root.setLevel(old_level)
        fh.close()


def exit_now() -> None:
    """End the job's process at once, after its outputs are written, closed and renamed into place.

    Skips the interpreter's teardown, which with torch, transformers and a model loaded takes 1 to
    3 s per job (measured on the 2-core VM; docs/benchmarks.md) and does nothing a finished job needs.
    Scripts call it as their last statement; an exception inside ``logged`` never reaches it, so a
    failed job still exits non-zero with its traceback in the log."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)
