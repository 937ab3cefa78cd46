"""Task registry, data loading (local Parquet mirror or the Hugging Face hub) and normalisation.

Every task is turned into one table per split with the columns

===========  ======  ===============================================================
``id``       str     stable, unique row id ``<task>-<split>-<key>`` (see below)
``text``     str     the (first) input sequence
``text_pair`` str    the second sequence of a pair task; null for single-sequence tasks
``label``    int64   class index in ``0 .. num_labels-1`` (:data:`TASKS`)
===========  ======  ===============================================================

Where the rows come from
------------------------
``load_split(task, split, mirror=...)`` reads ``<mirror>/<task>/<split>.parquet`` (the layout of
``../shared/data``; its ``SHA256SUMS`` is checked when present). With no mirror (``mirror=None``)
or when the mirror has no folder for the task, the data are fetched from the Hugging Face hub
with :func:`datasets.load_dataset` (MELD has no hub version: its official CSVs are read from the
``declare-lab/MELD`` GitHub repository at a pinned commit). Both paths go through the same
normalisation, so they yield the same rows with the same ids (except SNLI train, which is a
20,000-pair subset in the mirror, and the IMDB row order, which differs between the sources).

Per-task rules (our choices are marked *ours*)
----------------------------------------------
* **rotten_tomatoes** -- ``text``; key = row index.
* **trec** -- ``text``, ``label = coarse_label`` (6 classes). The hub has train/test only; the
  validation split is the train rows at positions ``numpy.random.default_rng(42).permutation(5452)[:500]``
  (kept in file order), train the other 4,952 rows, exactly as the mirror was built. Key = the
  row's position in the original 5,452-row train file (train and validation) or the test file.
* **snli** -- ``text = premise``, ``text_pair = hypothesis``; rows with label -1 (no gold label)
  are dropped; key = row index after dropping.
* **imdb** -- ``text``; there is no validation split anywhere, so *ours*: validation =
  :data:`IMDB_VALIDATION_SIZE` (2,500 = 10 %) distinct reviews of the train split, stratified by
  label in proportion to the distinct reviews per label (1,248 neg + 1,252 pos), chosen by the
  smallest ``sha256("imdb-validation:42:" + text)`` within each label;
  every copy of a chosen review goes to validation (the train split has 188 rows whose text occurs
  more than once; 9 extra copies land in validation, 2,509 rows, leaving 22,491 for train), so
  train and validation are disjoint by text. The rule depends only on the text, never on the row
  order, which differs between the mirror and the hub. Key = the first 16 hex digits of
  ``sha256(text)``, with ``-1``, ``-2``, ... appended to repeated copies of a review.
* **meld** -- ``text`` = the current utterance; ``text_pair`` = up to 7 previous utterances of the
  same dialogue (by ``Utterance_ID``), most recent first, joined by :data:`MELD_CONTEXT_SEPARATOR`
  (``" | "``, *ours*: plain text, independent of the tokenizer, so one prepared file serves every
  model); the empty string for the first utterance of a dialogue; ``label = emotion_label``
  (7 emotions). Key = ``<Dialogue_ID>-<Utterance_ID>``. The mirror's ``dev`` CSV is ``validation``.

Caps
----
``caps`` limits the number of rows of a split (an int, or a mapping split -> int | None). The
subsample is stratified by label (largest-remainder allocation of the cap over the label counts)
and, within a label, takes the rows with the smallest ``sha256("<seed>:<id>")``; rows keep their
original order. It depends only on the ids, so it is the same on both paths, and caps are nested
(a smaller cap with the same seed selects a subset of a larger one, up to allocation rounding).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import polars as pl

from .io import CorruptFileError, read_parquet, sha256_file, write_parquet

__all__ = [
    "TASKS",
    "TaskSpec",
    "SPLITS",
    "DataError",
    "CorruptDataError",
    "IMDB_VALIDATION_SIZE",
    "MELD_CONTEXT_SEPARATOR",
    "MELD_CONTEXT_SIZE",
    "PREPARED_SCHEMA",
    "verify_mirror",
    "load_split",
    "read_prepared",
    "write_prepared",
    "validate_prepared",
    "apply_cap",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Number of distinct train reviews moved to the IMDB validation split (10 % of 25,000).
IMDB_VALIDATION_SIZE = 2500
#: Salt of the hash that orders IMDB reviews for the validation carve-out.
IMDB_VALIDATION_SEED = 42
#: TREC validation: positions ``default_rng(TREC_VALIDATION_SEED).permutation(5452)[:500]`` of train.
TREC_VALIDATION_SEED = 42
TREC_TRAIN_ROWS = 5452
TREC_VALIDATION_SIZE = 500
#: How many previous utterances form the MELD context, and how they are joined.
MELD_CONTEXT_SIZE = 7
MELD_CONTEXT_SEPARATOR = " | "
#: Commit of declare-lab/MELD whose CSVs the mirror holds (see ../shared/data/README.md).
MELD_COMMIT = "2d2011b409d3ca2d7e94460cd007d434b1d0a102"
MELD_CSV_URLS: dict[str, str] = {
    split: f"https://raw.githubusercontent.com/declare-lab/MELD/{MELD_COMMIT}/data/MELD/{name}_sent_emo.csv"
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))
}

#: Column name -> polars dtype of a normalised split.
PREPARED_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,
    "text": pl.String,
    "text_pair": pl.String,
    "label": pl.Int64,
}


class DataError(ValueError):
    """Input data are missing, malformed or inconsistent; the message names the file and the problem."""


class CorruptDataError(DataError, CorruptFileError):
    """A data file cannot be read at all (truncated, not Parquet). Both a DataError and a CorruptFileError."""


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    ``hf_id`` is the Hugging Face dataset id (None for MELD, which is read from GitHub CSVs).
    ``columns`` maps the raw column names (mirror schema == hub schema) to their kind
    (``"str"`` or ``"int"``) that normalisation needs. ``recommended_max_length`` is a token
    budget that keeps >= 99 % of the examples untruncated with the MiniLM (BERT WordPiece)
    tokenizer, except IMDB (reviews average ~300 tokens; 512 is the model's limit).
    """

    name: str
    num_labels: int
    metric: str  # "accuracy" | "macro_f1"
    pair: bool
    hf_id: str | None
    label_names: tuple[str, ...]
    label_column: str = "label"
    columns: tuple[tuple[str, str], ...] = ()
    mirror_splits: tuple[str, ...] = SPLITS
    recommended_max_length: int = 128
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source and self.hf_id:
            object.__setattr__(self, "source", f"huggingface.co/datasets/{self.hf_id}")


TASKS: dict[str, TaskSpec] = {
    "meld": TaskSpec(
        name="meld",
        num_labels=7,
        metric="macro_f1",
        pair=True,
        hf_id=None,
        label_names=("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"),
        label_column="emotion_label",
        columns=(("Utterance", "str"), ("Dialogue_ID", "int"), ("Utterance_ID", "int"), ("emotion_label", "int")),
        recommended_max_length=160,
        source=f"github.com/declare-lab/MELD@{MELD_COMMIT[:7]} data/MELD/*_sent_emo.csv",
    ),
    "snli": TaskSpec(
        name="snli",
        num_labels=3,
        metric="accuracy",
        pair=True,
        hf_id="stanfordnlp/snli",
        label_names=("entailment", "neutral", "contradiction"),
        columns=(("premise", "str"), ("hypothesis", "str"), ("label", "int")),
        recommended_max_length=64,
    ),
    "rotten_tomatoes": TaskSpec(
        name="rotten_tomatoes",
        num_labels=2,
        metric="accuracy",
        pair=False,
        hf_id="cornell-movie-review-data/rotten_tomatoes",
        label_names=("neg", "pos"),
        columns=(("text", "str"), ("label", "int")),
        recommended_max_length=80,
    ),
    "imdb": TaskSpec(
        name="imdb",
        num_labels=2,
        metric="accuracy",
        pair=False,
        hf_id="stanfordnlp/imdb",
        label_names=("neg", "pos"),
        columns=(("text", "str"), ("label", "int")),
        mirror_splits=("train", "test"),
        recommended_max_length=512,
    ),
    "trec": TaskSpec(
        name="trec",
        num_labels=6,
        metric="accuracy",
        pair=False,
        hf_id="CogComp/trec",
        label_names=("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
        label_column="coarse_label",
        columns=(("text", "str"), ("coarse_label", "int")),
        recommended_max_length=32,
    ),
}


def _spec(task: str) -> TaskSpec:
    try:
        return TASKS[task]
    except KeyError:
        raise DataError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}") from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")


# --------------------------------------------------------------------------------------------
# Mirror integrity
# --------------------------------------------------------------------------------------------

_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 already checked


def _read_sums(mirror: Path) -> dict[str, str] | None:
    """Parse ``<mirror>/SHA256SUMS`` into relative path -> hex digest; None if the file is absent."""
    sums_path = mirror / "SHA256SUMS"
    if not sums_path.exists():
        return None
    sums: dict[str, str] = {}
    try:
        lines = sums_path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{sums_path}: unreadable ({exc})") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"{sums_path}:{lineno}: malformed line {line!r}; expected '<sha256>  <relative path>'")
        sums[parts[1].strip().lstrip("*").removeprefix("./")] = digest
    return sums


def _verify_file(mirror: Path, path: Path, sums: dict[str, str] | None) -> None:
    """Compare ``path`` with its SHA256SUMS entry (no-op without SHA256SUMS or entry)."""
    if sums is None:
        return
    rel = path.relative_to(mirror).as_posix()
    expected = sums.get(rel)
    if expected is None:
        log.warning("%s: not listed in %s; its checksum is not verified", path, mirror / "SHA256SUMS")
        return
    st = path.stat()
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(cache_key) == expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path}: checksum mismatch: sha256 is {actual}, but {mirror / 'SHA256SUMS'} records {expected} "
            "(the file was modified or is damaged; restore it from the original mirror)"
        )
    _VERIFIED[cache_key] = expected


def verify_mirror(mirror: str | os.PathLike, task: str | None = None) -> None:
    """Check that the mirror has every split file of ``task`` (or of all tasks) and that every
    file listed in ``SHA256SUMS`` (restricted to the task's folder) matches its checksum.

    Raises :class:`DataError` naming the first missing or mismatching file.
    """
    mirror = Path(mirror)
    if not mirror.is_dir():
        raise DataError(f"{mirror}: data mirror directory not found")
    tasks = [_spec(task)] if task is not None else list(TASKS.values())
    for spec in tasks:
        for split in spec.mirror_splits:
            path = mirror / spec.name / f"{split}.parquet"
            if not path.is_file():
                raise DataError(f"{path}: missing file (split {split!r} of task {spec.name!r})")
    sums = _read_sums(mirror)
    if sums is None:
        log.info("%s: no SHA256SUMS; checksums not verified", mirror)
        return
    for rel in sorted(sums):
        if task is not None and not rel.startswith(f"{task}/"):
            continue
        path = mirror / rel
        if not path.is_file():
            raise DataError(f"{path}: missing file (listed in {mirror / 'SHA256SUMS'})")
        _verify_file(mirror, path, sums)


# --------------------------------------------------------------------------------------------
# Raw sources: each returns the raw table in the mirror schema plus a "__key" column
# --------------------------------------------------------------------------------------------


def _read_mirror_file(mirror: Path, spec: TaskSpec, split: str) -> tuple[pl.DataFrame, str]:
    path = mirror / spec.name / f"{split}.parquet"
    if not path.is_file():
        raise DataError(
            f"{path}: missing file (split {split!r} of task {spec.name!r}); the mirror layout is "
            f"<mirror>/<task>/<split>.parquet with splits {list(spec.mirror_splits)} for {spec.name!r}"
        )
    _verify_file(mirror, path, _read_sums(mirror))
    try:
        df = read_parquet(path)
    except CorruptFileError as exc:
        raise CorruptDataError(str(exc)) from exc
    return df, str(path)


def _trec_validation_positions() -> np.ndarray:
    """0-based positions of the 500 TREC train rows that form the validation split, sorted."""
    rng = np.random.default_rng(TREC_VALIDATION_SEED)
    return np.sort(rng.permutation(TREC_TRAIN_ROWS)[:TREC_VALIDATION_SIZE])


def _trec_keys(split: str, n: int, source: str) -> list[str]:
    """Original-file positions of the rows of a mirror TREC split (validation was carved from train)."""
    if split == "test":
        return [str(i) for i in range(n)]
    val = _trec_validation_positions()
    if split == "validation":
        pos = val
    else:
        pos = np.setdiff1d(np.arange(TREC_TRAIN_ROWS), val)
    if len(pos) != n:
        log.warning(
            "%s: %d rows, not the %d of the documented TREC carve-out; ids use row positions instead",
            source, n, len(pos),
        )
        return [str(i) for i in range(n)]
    return [str(int(p)) for p in pos]


def _carve_trec(full_train: pl.DataFrame, split: str) -> pl.DataFrame:
    """Split the 5,452-row TREC train file into the mirror's train/validation, keys = positions."""
    if full_train.height != TREC_TRAIN_ROWS:
        raise DataError(
            f"TREC hub train split has {full_train.height} rows, expected {TREC_TRAIN_ROWS}; "
            "cannot carve the validation split the mirror uses"
        )
    is_val = np.zeros(TREC_TRAIN_ROWS, dtype=bool)
    is_val[_trec_validation_positions()] = True
    df = full_train.with_columns(__key=pl.int_range(pl.len()).cast(pl.String))
    return df.filter(pl.Series(is_val if split == "validation" else ~is_val))


def _hub_load(hf_id: str, split: str, cache_dir: str | None):
    """``datasets.load_dataset(hf_id, split=split)``; retries the hub's Parquet export for datasets
    that still ship a loading script (unsupported since datasets 4)."""
    import datasets

    try:
        return datasets.load_dataset(hf_id, split=split, cache_dir=cache_dir)
    except RuntimeError as exc:
        if "scripts are no longer supported" not in str(exc):
            raise
        log.info("%s: loading script not supported, using the hub's refs/convert/parquet export", hf_id)
        return datasets.load_dataset(hf_id, split=split, revision="refs/convert/parquet", cache_dir=cache_dir)


def _read_hub(spec: TaskSpec, split: str, cache_dir: str | None = None) -> tuple[pl.DataFrame, str]:
    """Fetch one split from the hub (GitHub for MELD) in the mirror schema, with TREC/SNLI/IMDB
    split rules applied exactly as the mirror did."""
    import datasets

    if spec.name == "meld":
        url = MELD_CSV_URLS[split]
        # keep_default_na=False: an utterance such as "NA" or "None" stays text.
        ds = datasets.load_dataset(
            "csv", data_files={split: url}, split=split, keep_default_na=False, cache_dir=cache_dir
        )
        df = ds.to_polars()
        if "Emotion" not in df.columns:
            raise DataError(f"{url}: missing column 'Emotion'; found {df.columns}")
        to_id = {name: i for i, name in enumerate(spec.label_names)}
        unknown = sorted(set(df["Emotion"].to_list()) - set(to_id))
        if unknown:
            raise DataError(f"{url}: unknown Emotion value(s) {unknown}; expected {list(spec.label_names)}")
        df = df.with_columns(emotion_label=pl.col("Emotion").replace_strict(to_id, return_dtype=pl.Int64))
        return df, url
    hub_split = "train" if (split == "validation" and spec.name in ("trec", "imdb")) else split
    source = f"{spec.hf_id} (hub split {hub_split!r})"
    df = _hub_load(spec.hf_id, hub_split, cache_dir).to_polars()
    if spec.name == "trec" and split != "test":
        df = _carve_trec(df, split)
    return df, source


# --------------------------------------------------------------------------------------------
# Normalisation (identical for mirror and hub rows)
# --------------------------------------------------------------------------------------------


def _check_columns(df: pl.DataFrame, spec: TaskSpec, source: str) -> None:
    missing = [c for c, _ in spec.columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing} for task {spec.name!r}; found {df.columns}")
    for col, kind in spec.columns:
        dtype = df.schema[col]
        ok = dtype == pl.String if kind == "str" else dtype.is_integer()
        if not ok:
            raise DataError(f"{source}: column {col!r} has type {dtype}, expected {'string' if kind == 'str' else 'integer'}")
        n_null = df[col].null_count()
        if n_null:
            raise DataError(f"{source}: column {col!r} has {n_null} null value(s)")


def _check_labels(labels: pl.Series, spec: TaskSpec, source: str, column: str) -> None:
    bad = labels.filter((labels < 0) | (labels >= spec.num_labels))
    if bad.len():
        raise DataError(
            f"{source}: column {column!r} has {bad.len()} label(s) outside 0..{spec.num_labels - 1} "
            f"for task {spec.name!r} (e.g. {sorted(set(bad.to_list()))[:5]})"
        )


def _text_hash(text: str, salt: str = "") -> str:
    return hashlib.sha256((salt + text).encode("utf-8")).hexdigest()


def _content_keys(texts: list[str]) -> list[str]:
    """sha256(text)[:16], with -1, -2, ... appended to repeated copies of the same text."""
    seen: dict[str, int] = {}
    keys = []
    for t in texts:
        h = _text_hash(t)[:16]
        k = seen.get(h, 0)
        seen[h] = k + 1
        keys.append(h if k == 0 else f"{h}-{k}")
    return keys


def _allocate(counts: Mapping[int, int], total: int) -> dict[int, int]:
    """Largest-remainder allocation of ``total`` over groups proportional to ``counts``.

    Ties of the fractional parts go to the smaller label. Never exceeds a group's count."""
    n = sum(counts.values())
    if total >= n:
        return dict(counts)
    quotas = {k: total * c / n for k, c in counts.items()}
    alloc = {k: int(q) for k, q in quotas.items()}
    rest = total - sum(alloc.values())
    for k in sorted(counts, key=lambda k: (-(quotas[k] - alloc[k]), k))[:rest]:
        alloc[k] += 1
    return alloc


def _imdb_carve(train: pl.DataFrame, split: str, size: int, source: str) -> pl.DataFrame:
    """IMDB validation = ``size`` distinct reviews (stratified) with the smallest salted hash."""
    if size <= 0 or size >= train.height:
        raise DataError(f"{source}: imdb_validation_size={size} must be in 1..{train.height - 1}")
    texts = train["text"].to_list()
    labels = train["label"].to_list()
    salt = f"imdb-validation:{IMDB_VALIDATION_SEED}:"
    first_label: dict[str, int] = {}
    for t, y in zip(texts, labels):
        first_label.setdefault(t, y)
    by_label: dict[int, list[tuple[str, str]]] = {}
    for t, y in first_label.items():
        by_label.setdefault(y, []).append((_text_hash(t, salt), t))
    alloc = _allocate({y: len(v) for y, v in by_label.items()}, size)
    chosen: set[str] = set()
    for y, items in by_label.items():
        items.sort()
        chosen.update(t for _, t in items[: alloc[y]])
    in_val = pl.Series([t in chosen for t in texts])
    return train.filter(in_val if split == "validation" else ~in_val)


def _meld_context(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``__context``: up to 7 previous utterances of the dialogue, most recent first."""
    ordered = df.with_row_index("__row").sort(["Dialogue_ID", "Utterance_ID"])
    prev = [pl.col("Utterance").shift(k).over("Dialogue_ID") for k in range(1, MELD_CONTEXT_SIZE + 1)]
    ordered = ordered.with_columns(
        __context=pl.concat_str(prev, separator=MELD_CONTEXT_SEPARATOR, ignore_nulls=True).fill_null("")
    )
    return ordered.sort("__row").drop("__row")


def _normalise(raw: pl.DataFrame, spec: TaskSpec, split: str, source: str, *, imdb_validation_size: int) -> pl.DataFrame:
    _check_columns(raw, spec, source)
    task = spec.name
    if task == "snli":
        raw = raw.filter(pl.col("label") != -1)
    if task == "imdb" and split != "test":
        _check_labels(raw[spec.label_column], spec, source, spec.label_column)
        raw = _imdb_carve(raw, split, imdb_validation_size, source)
    if raw.height == 0:
        raise DataError(f"{source}: no rows for split {split!r} of task {task!r}")
    label = raw[spec.label_column].cast(pl.Int64)
    _check_labels(label, spec, source, spec.label_column)

    if task == "meld":
        raw = _meld_context(raw)
        keys = [f"{d}-{u}" for d, u in zip(raw["Dialogue_ID"].to_list(), raw["Utterance_ID"].to_list())]
        text, pair = raw["Utterance"], raw["__context"]
    elif task == "snli":
        keys = [str(i) for i in range(raw.height)]
        text, pair = raw["premise"], raw["hypothesis"]
    else:
        text, pair = raw["text"], pl.Series([None] * raw.height, dtype=pl.String)
        if task == "imdb":
            keys = _content_keys(raw["text"].to_list())
        elif task == "trec":
            keys = raw["__key"].to_list() if "__key" in raw.columns else _trec_keys(split, raw.height, source)
        else:
            keys = [str(i) for i in range(raw.height)]
    out = pl.DataFrame(
        {
            "id": [f"{task}-{split}-{k}" for k in keys],
            "text": text,
            "text_pair": pair,
            "label": label,
        },
        schema=PREPARED_SCHEMA,
    )
    dup = out["id"].is_duplicated()
    if dup.any():
        raise DataError(f"{source}: duplicate row key(s) {out['id'].filter(dup).unique().to_list()[:5]}")
    return out


# --------------------------------------------------------------------------------------------
# Public loading API
# --------------------------------------------------------------------------------------------


def apply_cap(df: pl.DataFrame, cap: int | None, seed: int = 0) -> pl.DataFrame:
    """Deterministic stratified subsample of at most ``cap`` rows, original order kept.

    Within each label the rows with the smallest ``sha256(f"{seed}:{id}")`` are kept; the cap is
    spread over labels by largest remainder. ``cap=None`` or ``cap >= len(df)`` returns ``df``.
    """
    if cap is None or cap >= df.height:
        return df
    if not isinstance(cap, (int, np.integer)) or isinstance(cap, bool) or cap <= 0:
        raise ValueError(f"cap must be a positive integer or None, got {cap!r}")
    labels = df["label"].to_list()
    ranks = [_text_hash(i, f"{seed}:") for i in df["id"].to_list()]
    counts: dict[int, int] = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    alloc = _allocate(counts, int(cap))
    keep = np.zeros(df.height, dtype=bool)
    for y in counts:
        idx = [i for i, lab in enumerate(labels) if lab == y]
        idx.sort(key=lambda i: ranks[i])
        keep[idx[: alloc[y]]] = True
    return df.filter(pl.Series(keep))


def _cap_for(caps, split: str):
    if caps is None or isinstance(caps, (int, np.integer)):
        return caps
    if isinstance(caps, Mapping):
        unknown = set(caps) - set(SPLITS)
        if unknown:
            raise ValueError(f"caps has unknown split(s) {sorted(unknown)}; expected keys among {SPLITS}")
        return caps.get(split)
    raise ValueError(f"caps must be None, an int or a mapping split -> int, got {type(caps).__name__}")


def load_split(
    task: str,
    split: str,
    *,
    mirror: str | os.PathLike | None = None,
    caps: int | Mapping[str, int | None] | None = None,
    seed: int = 0,
    imdb_validation_size: int = IMDB_VALIDATION_SIZE,
    cache_dir: str | None = None,
) -> pl.DataFrame:
    """Load one split of a task as a normalised table (columns ``id, text, text_pair, label``).

    ``mirror``: folder laid out as ``<mirror>/<task>/<split>.parquet`` (e.g. ``../shared/data``).
    When it is None or has no ``<task>`` folder, the Hugging Face hub is used (``cache_dir`` is
    passed to :func:`datasets.load_dataset`). ``caps``/``seed``: see :func:`apply_cap`; the seed
    affects only the cap. Raises :class:`DataError` naming the file and the problem.
    """
    spec = _spec(task)
    _check_split(split)
    cap = _cap_for(caps, split)
    if cap is not None and (not isinstance(cap, (int, np.integer)) or isinstance(cap, bool) or cap <= 0):
        raise ValueError(f"cap for split {split!r} must be a positive integer or None, got {cap!r}")

    raw = source = None
    mirror_note = "no mirror configured"
    if mirror is not None:
        mirror = Path(mirror)
        folder = mirror / task
        if folder.is_dir():
            raw_split = "train" if (task == "imdb" and split == "validation") else split
            raw, source = _read_mirror_file(mirror, spec, raw_split)
            log.info("%s/%s: read %s (%d rows)", task, split, source, raw.height)
        else:
            mirror_note = f"{folder} does not exist"
            log.warning("%s: no folder for task %r in the mirror; trying the hub", folder, task)
    if raw is None:
        hub_note = spec.hf_id or MELD_CSV_URLS[split]
        try:
            raw, source = _read_hub(spec, split, cache_dir)
        except DataError:
            raise
        except Exception as exc:  # offline, unknown id, HTTP errors: one message naming both places
            raise DataError(
                f"task {task!r} split {split!r}: not available. Tried the local mirror ({mirror_note}) and "
                f"the Hugging Face hub / web ({hub_note}: {type(exc).__name__}: {exc}). "
                "Point the mirror at a folder laid out like ../shared/data or go online."
            ) from exc
        log.info("%s/%s: fetched %s (%d rows)", task, split, source, raw.height)

    df = _normalise(raw, spec, split, source, imdb_validation_size=imdb_validation_size)
    return apply_cap(df, cap, seed)


def validate_prepared(df: pl.DataFrame, source: str, task: str | None = None) -> pl.DataFrame:
    """Check a normalised table (schema, nulls, unique ids, label range); return it unchanged."""
    missing = [c for c in PREPARED_SCHEMA if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {df.columns}")
    for col, dtype in PREPARED_SCHEMA.items():
        if df.schema[col] != dtype and not (col == "text_pair" and df.schema[col] == pl.Null):
            raise DataError(f"{source}: column {col!r} has type {df.schema[col]}, expected {dtype}")
    for col in ("id", "text", "label"):
        if df[col].null_count():
            raise DataError(f"{source}: column {col!r} has {df[col].null_count()} null value(s)")
    if df["id"].is_duplicated().any():
        raise DataError(f"{source}: duplicate id(s) {df['id'].filter(df['id'].is_duplicated()).unique().to_list()[:5]}")
    if task is not None:
        spec = _spec(task)
        _check_labels(df["label"], spec, source, "label")
        n_pair = df.height - df["text_pair"].null_count()
        if spec.pair and n_pair != df.height:
            raise DataError(f"{source}: task {task!r} is a pair task but {df.height - n_pair} text_pair value(s) are null")
        if not spec.pair and n_pair:
            raise DataError(f"{source}: task {task!r} is not a pair task but {n_pair} text_pair value(s) are set")
    elif df.height and df["label"].min() < 0:
        raise DataError(f"{source}: negative label(s) in column 'label'")
    return df


def write_prepared(df: pl.DataFrame, path: str | os.PathLike, task: str | None = None) -> None:
    """Validate a normalised table and write it atomically as Parquet."""
    df = df.with_columns(pl.col("text_pair").cast(pl.String))
    validate_prepared(df, str(path), task)
    write_parquet(df.select(list(PREPARED_SCHEMA)), path)


def read_prepared(path: str | os.PathLike, task: str | None = None) -> pl.DataFrame:
    """Read and validate a table written by the prepare stage (:func:`write_prepared`).

    Missing file -> :class:`DataError`; unreadable file -> :class:`CorruptDataError` (also a
    :class:`~adapter_pruning.io.CorruptFileError`); bad schema/labels -> :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing file (prepared data; run the prepare stage)")
    try:
        df = read_parquet(path)
    except CorruptFileError as exc:
        raise CorruptDataError(str(exc)) from exc
    validate_prepared(df, str(path), task)
    return df.with_columns(pl.col("text_pair").cast(pl.String)).select(list(PREPARED_SCHEMA))
