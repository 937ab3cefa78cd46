"""Crash-safe file output and integrity checks shared by every stage.

Every file the pipeline writes goes to a temporary sibling first and is renamed into place
(``os.replace`` is atomic on POSIX within one file system), so a reader never sees a half-written
file, and a killed job leaves at most a stray ``.tmp-*`` file behind, never a truncated output.
Directories (AdapterHub checkpoints) are built in a temporary sibling directory and renamed whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_json",
    "read_json",
    "write_parquet",
    "read_parquet",
    "sha256_file",
    "CorruptFileError",
]


class CorruptFileError(RuntimeError):
    """A file the pipeline wrote earlier is truncated, unreadable or fails its checks."""


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix so writers that dispatch on the extension
    (matplotlib, polars) behave. On any exception the temporary file is removed and ``path`` is
    left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; move it onto ``path`` on success.

    An existing ``path`` is replaced (Snakemake removes outputs before a job, so this only
    matters when the package is used directly).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{path.name}-", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON written by :func:`write_json`; raise :class:`CorruptFileError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc}); delete it and rerun the rule that makes it") from exc


def write_parquet(df, path: str | os.PathLike) -> None:
    """Write a polars DataFrame to Parquet (zstd) atomically."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True)


def read_parquet(path: str | os.PathLike, required_columns: Mapping[str, Any] | list[str] | None = None):
    """Read a Parquet file with polars; raise :class:`CorruptFileError` naming the file on damage.

    ``required_columns``: column names (or a name -> polars dtype mapping) that must be present.
    """
    import polars as pl

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several exception types for damaged files
        raise CorruptFileError(
            f"{path}: unreadable Parquet ({type(exc).__name__}: {exc}); the file is truncated or corrupted"
        ) from exc
    if required_columns:
        names = list(required_columns)
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise CorruptFileError(f"{path}: missing column(s) {missing}; found {df.columns}")
        if isinstance(required_columns, Mapping):
            for name, dtype in required_columns.items():
                if dtype is not None and df.schema[name] != dtype:
                    raise CorruptFileError(f"{path}: column {name!r} has type {df.schema[name]}, expected {dtype}")
    return df


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
