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
Each task's rules are one :class:`TaskSpec` entry of :data:`TASKS` (loader, label mapping,
validation carve-out, input construction, row keys, metric); adding a task is adding an entry.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .io import CorruptFileError, read_parquet, sha256_file, write_parquet

__all__ = [
    "TASKS",
    "TaskSpec",
    "ValidationCarveOut",
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


# --------------------------------------------------------------------------------------------
# Per-task behaviour, referenced by the registry entries below
# --------------------------------------------------------------------------------------------


def _text_hash(text: str, salt: str = "") -> str:
    return hashlib.sha256((salt + text).encode("utf-8")).hexdigest()


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


def _no_pair(rows: pl.DataFrame) -> pl.Series:
    """An all-null ``text_pair`` column for a single-sequence task."""
    return pl.Series([None] * rows.height, dtype=pl.String)


def _text_inputs(rows: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """Single-sequence input: the ``text`` column; no second sequence."""
    return rows["text"], _no_pair(rows)


def _snli_inputs(rows: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """Sentence pair: ``premise`` then ``hypothesis``."""
    return rows["premise"], rows["hypothesis"]


def _meld_inputs(rows: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """The current ``Utterance``, paired with up to :data:`MELD_CONTEXT_SIZE` previous utterances of
    the same dialogue (by ``Utterance_ID``, whatever the row order), most recent first, joined by
    :data:`MELD_CONTEXT_SEPARATOR`; the empty string for a dialogue's first utterance."""
    ordered = rows.with_row_index("__row").sort(["Dialogue_ID", "Utterance_ID"])
    previous = [pl.col("Utterance").shift(k).over("Dialogue_ID") for k in range(1, MELD_CONTEXT_SIZE + 1)]
    ordered = ordered.with_columns(
        __context=pl.concat_str(previous, separator=MELD_CONTEXT_SEPARATOR, ignore_nulls=True).fill_null("")
    )
    context = ordered.sort("__row")["__context"]
    return rows["Utterance"], context


def _row_index_keys(rows: pl.DataFrame, split: str, source: str) -> list[str]:
    """Key = the row's index in the split (after any dropped rows)."""
    return [str(i) for i in range(rows.height)]


def _content_keys(rows: pl.DataFrame, split: str, source: str) -> list[str]:
    """Key = ``sha256(text)[:16]``, with -1, -2, ... appended to repeated copies of the same text
    (independent of the row order)."""
    seen: dict[str, int] = {}
    keys = []
    for text in rows["text"].to_list():
        digest = _text_hash(text)[:16]
        copies = seen.get(digest, 0)
        seen[digest] = copies + 1
        keys.append(digest if copies == 0 else f"{digest}-{copies}")
    return keys


def _meld_keys(rows: pl.DataFrame, split: str, source: str) -> list[str]:
    """Key = ``<Dialogue_ID>-<Utterance_ID>``."""
    return [f"{d}-{u}" for d, u in zip(rows["Dialogue_ID"].to_list(), rows["Utterance_ID"].to_list())]


def _trec_validation_positions() -> np.ndarray:
    """0-based positions of the 500 TREC train rows that form the validation split, sorted."""
    rng = np.random.default_rng(TREC_VALIDATION_SEED)
    return np.sort(rng.permutation(TREC_TRAIN_ROWS)[:TREC_VALIDATION_SIZE])


def _trec_keys(rows: pl.DataFrame, split: str, source: str) -> list[str]:
    """Key = the row's position in the original file: the 5,452-row train file for train and
    validation, the test file for test. Rows carved on the hub path carry it in ``__key``; the
    mirror's train and validation files follow the documented carve-out."""
    if "__key" in rows.columns:
        return rows["__key"].to_list()
    n = rows.height
    if split == "test":
        return [str(i) for i in range(n)]
    validation = _trec_validation_positions()
    if split == "validation":
        positions = validation
    else:
        positions = np.setdiff1d(np.arange(TREC_TRAIN_ROWS), validation)
    if len(positions) != n:
        log.warning(
            "%s: %d rows, not the %d of the documented TREC carve-out; ids use row positions instead",
            source,
            n,
            len(positions),
        )
        return [str(i) for i in range(n)]
    return [str(int(p)) for p in positions]


def _trec_carve(full_train: pl.DataFrame, split: str, source: str, validation_size: int) -> pl.DataFrame:
    """Split the 5,452-row TREC train file into train/validation by the fixed rule
    ``default_rng(42).permutation(5452)[:500]`` (``validation_size`` does not apply); ``__key`` = the
    row's position in the file."""
    if full_train.height != TREC_TRAIN_ROWS:
        raise DataError(
            f"TREC hub train split has {full_train.height} rows, expected {TREC_TRAIN_ROWS}; "
            "cannot carve the validation split the mirror uses"
        )
    is_validation = np.zeros(TREC_TRAIN_ROWS, dtype=bool)
    is_validation[_trec_validation_positions()] = True
    rows = full_train.with_columns(__key=pl.int_range(pl.len()).cast(pl.String))
    return rows.filter(pl.Series(is_validation if split == "validation" else ~is_validation))


def _imdb_carve(train: pl.DataFrame, split: str, source: str, validation_size: int) -> pl.DataFrame:
    """IMDB validation = ``validation_size`` distinct reviews, stratified by label, with the smallest
    salted hash; every copy of a chosen review goes with it. Train = the other rows."""
    if validation_size <= 0 or validation_size >= train.height:
        raise DataError(f"{source}: imdb_validation_size={validation_size} must be in 1..{train.height - 1}")
    texts = train["text"].to_list()
    labels = train["label"].to_list()
    salt = f"imdb-validation:{IMDB_VALIDATION_SEED}:"
    first_label: dict[str, int] = {}
    for t, y in zip(texts, labels):
        first_label.setdefault(t, y)
    by_label: dict[int, list[tuple[str, str]]] = {}
    for t, y in first_label.items():
        by_label.setdefault(y, []).append((_text_hash(t, salt), t))
    alloc = _allocate({y: len(v) for y, v in by_label.items()}, validation_size)
    chosen: set[str] = set()
    for y, items in by_label.items():
        items.sort()
        chosen.update(t for _, t in items[: alloc[y]])
    in_validation = pl.Series([t in chosen for t in texts])
    return train.filter(in_validation if split == "validation" else ~in_validation)


# --------------------------------------------------------------------------------------------
# Task registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationCarveOut:
    """A validation split made from the train split by a source that has none.

    ``missing_in``: the sources (``"mirror"``, ``"hub"``) without a validation split. There the
    train rows are read for both train and validation, and ``split_rows(train_rows, split, source,
    validation_size)`` keeps the rows of ``split`` (``validation_size`` is :func:`load_split`'s
    ``imdb_validation_size``).
    """

    missing_in: frozenset[str]
    split_rows: Callable[[pl.DataFrame, str, str, int], pl.DataFrame]


@dataclass(frozen=True)
class TaskSpec:
    """Everything task-specific: where the rows come from and how they become the normalised table.

    * what it is: ``name``, ``num_labels``, ``label_names`` (in class-index order), ``metric``
      (``"accuracy"`` or ``"macro_f1"``, the one that selects checkpoints and fills the tables),
      ``pair`` (whether ``text_pair`` is set);
    * loader: the mirror file ``<mirror>/<name>/<split>.parquet``; on the hub path the dataset
      ``hf_id``, or, when ``csv_urls`` is set (MELD), the CSV file of each split. ``columns`` are the
      raw columns (mirror schema == hub schema) with their kind (``"str"`` or ``"int"``), checked on
      both paths; ``source`` names the origin for people;
    * label mapping: ``label_column`` holds the class index; a source that has class names instead
      (MELD's CSV ``Emotion``) names them in ``label_name_column``, mapped to indices in
      ``label_names`` order; rows whose label is ``unlabelled`` (SNLI's -1, no gold label) are dropped;
    * validation carve-out: ``carve_out`` (:class:`ValidationCarveOut`) or None;
    * input construction: ``inputs(rows) -> (text, text_pair)``; row ids: ``keys(rows, split, source)``
      gives the ``<key>`` of ``<task>-<split>-<key>``;
    * ``recommended_max_length``: a token budget that keeps >= 99 % of the examples untruncated with
      the MiniLM (BERT WordPiece) tokenizer, except IMDB (reviews average ~300 tokens; 512 is the
      model's limit).
    """

    name: str
    num_labels: int
    metric: str
    pair: bool
    hf_id: str | None
    label_names: tuple[str, ...]
    inputs: Callable[[pl.DataFrame], tuple[pl.Series, pl.Series]]
    keys: Callable[[pl.DataFrame, str, str], list[str]]
    columns: tuple[tuple[str, str], ...]
    label_column: str = "label"
    label_name_column: str | None = None
    unlabelled: int | None = None
    carve_out: ValidationCarveOut | None = None
    csv_urls: Mapping[str, str] | None = field(default=None, hash=False)
    recommended_max_length: int = 128
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source and self.hf_id:
            object.__setattr__(self, "source", f"huggingface.co/datasets/{self.hf_id}")

    @property
    def mirror_splits(self) -> tuple[str, ...]:
        """The split files the mirror holds for this task."""
        return tuple(s for s in SPLITS if s != "validation" or not self.carves_validation("mirror"))

    def carves_validation(self, origin: str) -> bool:
        """Whether ``origin`` (``"mirror"`` or ``"hub"``) lacks a validation split that is then carved from train."""
        return self.carve_out is not None and origin in self.carve_out.missing_in

    def source_split(self, split: str, origin: str) -> str:
        """The split of ``origin`` whose rows make ``split`` (train for a carved validation split)."""
        return "train" if split == "validation" and self.carves_validation(origin) else split

    def hub_location(self, split: str) -> str:
        """Where the hub path fetches ``split`` (named in the error when it fails)."""
        return self.hf_id or self.csv_urls[split]


TASKS: dict[str, TaskSpec] = {
    "meld": TaskSpec(
        name="meld",
        num_labels=7,
        metric="macro_f1",
        pair=True,
        hf_id=None,
        csv_urls=MELD_CSV_URLS,
        label_names=("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"),
        label_column="emotion_label",
        label_name_column="Emotion",
        columns=(("Utterance", "str"), ("Dialogue_ID", "int"), ("Utterance_ID", "int"), ("emotion_label", "int")),
        inputs=_meld_inputs,
        keys=_meld_keys,
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
        unlabelled=-1,
        columns=(("premise", "str"), ("hypothesis", "str"), ("label", "int")),
        inputs=_snli_inputs,
        keys=_row_index_keys,
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
        inputs=_text_inputs,
        keys=_row_index_keys,
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
        carve_out=ValidationCarveOut(missing_in=frozenset({"mirror", "hub"}), split_rows=_imdb_carve),
        inputs=_text_inputs,
        keys=_content_keys,
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
        carve_out=ValidationCarveOut(missing_in=frozenset({"hub"}), split_rows=_trec_carve),
        inputs=_text_inputs,
        keys=_trec_keys,
        recommended_max_length=32,
    ),
}


def _task_spec(task: str) -> TaskSpec:
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
    task_specs = [_task_spec(task)] if task is not None else list(TASKS.values())
    for task_spec in task_specs:
        for split in task_spec.mirror_splits:
            path = mirror / task_spec.name / f"{split}.parquet"
            if not path.is_file():
                raise DataError(f"{path}: missing file (split {split!r} of task {task_spec.name!r})")
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
# Raw sources: each returns the raw rows in the mirror schema and a description of their origin
# --------------------------------------------------------------------------------------------


def _read_mirror_file(mirror: Path, task_spec: TaskSpec, split: str) -> tuple[pl.DataFrame, str]:
    path = mirror / task_spec.name / f"{split}.parquet"
    if not path.is_file():
        raise DataError(
            f"{path}: missing file (split {split!r} of task {task_spec.name!r}); the mirror layout is "
            f"<mirror>/<task>/<split>.parquet with splits {list(task_spec.mirror_splits)} for {task_spec.name!r}"
        )
    _verify_file(mirror, path, _read_sums(mirror))
    try:
        df = read_parquet(path)
    except CorruptFileError as exc:
        raise CorruptDataError(str(exc)) from exc
    return df, str(path)


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


def _labels_from_names(raw: pl.DataFrame, task_spec: TaskSpec, source: str) -> pl.DataFrame:
    """Map the class names in ``label_name_column`` to indices (``label_names`` order) in ``label_column``."""
    names = task_spec.label_name_column
    if names not in raw.columns:
        raise DataError(f"{source}: missing column {names!r}; found {raw.columns}")
    to_index = {name: i for i, name in enumerate(task_spec.label_names)}
    unknown = sorted(set(raw[names].to_list()) - set(to_index))
    if unknown:
        raise DataError(f"{source}: unknown {names} value(s) {unknown}; expected {list(task_spec.label_names)}")
    return raw.with_columns(pl.col(names).replace_strict(to_index, return_dtype=pl.Int64).alias(task_spec.label_column))


def _read_hub(task_spec: TaskSpec, split: str, cache_dir: str | None = None) -> tuple[pl.DataFrame, str]:
    """Fetch the rows of ``split`` from the hub (a task's CSV files where it has them), in the mirror schema.

    A validation split the hub lacks comes back as the whole train split; :func:`_normalise` carves it."""
    import datasets

    if task_spec.csv_urls is not None:
        source = task_spec.csv_urls[split]
        # keep_default_na=False: an utterance such as "NA" or "None" stays text.
        raw = datasets.load_dataset(
            "csv", data_files={split: source}, split=split, keep_default_na=False, cache_dir=cache_dir
        ).to_polars()
    else:
        hub_split = task_spec.source_split(split, "hub")
        source = f"{task_spec.hf_id} (hub split {hub_split!r})"
        raw = _hub_load(task_spec.hf_id, hub_split, cache_dir).to_polars()
    if task_spec.label_name_column is not None:
        raw = _labels_from_names(raw, task_spec, source)
    return raw, source


# --------------------------------------------------------------------------------------------
# Normalisation (identical for mirror and hub rows)
# --------------------------------------------------------------------------------------------


def _check_columns(df: pl.DataFrame, task_spec: TaskSpec, source: str) -> None:
    missing = [c for c, _ in task_spec.columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing} for task {task_spec.name!r}; found {df.columns}")
    for col, kind in task_spec.columns:
        dtype = df.schema[col]
        ok = dtype == pl.String if kind == "str" else dtype.is_integer()
        if not ok:
            expected = "string" if kind == "str" else "integer"
            raise DataError(f"{source}: column {col!r} has type {dtype}, expected {expected}")
        n_null = df[col].null_count()
        if n_null:
            raise DataError(f"{source}: column {col!r} has {n_null} null value(s)")


def _check_labels(labels: pl.Series, task_spec: TaskSpec, source: str, column: str) -> None:
    bad = labels.filter((labels < 0) | (labels >= task_spec.num_labels))
    if bad.len():
        raise DataError(
            f"{source}: column {column!r} has {bad.len()} label(s) outside 0..{task_spec.num_labels - 1} "
            f"for task {task_spec.name!r} (e.g. {sorted(set(bad.to_list()))[:5]})"
        )


def _normalise(
    raw: pl.DataFrame, task_spec: TaskSpec, split: str, source: str, origin: str, *, imdb_validation_size: int
) -> pl.DataFrame:
    """Turn the raw rows of ``split`` read from ``origin`` (``"mirror"`` or ``"hub"``) into the
    normalised table, following the task's registry entry."""
    _check_columns(raw, task_spec, source)
    task, label_column = task_spec.name, task_spec.label_column
    if task_spec.unlabelled is not None:
        raw = raw.filter(pl.col(label_column) != task_spec.unlabelled)
    if split != "test" and task_spec.carves_validation(origin):
        _check_labels(raw[label_column], task_spec, source, label_column)
        raw = task_spec.carve_out.split_rows(raw, split, source, imdb_validation_size)
    if raw.height == 0:
        raise DataError(f"{source}: no rows for split {split!r} of task {task!r}")
    label = raw[label_column].cast(pl.Int64)
    _check_labels(label, task_spec, source, label_column)
    text, pair = task_spec.inputs(raw)
    keys = task_spec.keys(raw, split, source)
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
    task_spec = _task_spec(task)
    _check_split(split)
    cap = _cap_for(caps, split)
    if cap is not None and (not isinstance(cap, (int, np.integer)) or isinstance(cap, bool) or cap <= 0):
        raise ValueError(f"cap for split {split!r} must be a positive integer or None, got {cap!r}")

    raw = source = None
    origin = "mirror"
    mirror_note = "no mirror configured"
    if mirror is not None:
        mirror = Path(mirror)
        folder = mirror / task
        if folder.is_dir():
            raw, source = _read_mirror_file(mirror, task_spec, task_spec.source_split(split, "mirror"))
            log.info("%s/%s: read %s (%d rows)", task, split, source, raw.height)
        else:
            mirror_note = f"{folder} does not exist"
            log.warning("%s: no folder for task %r in the mirror; trying the hub", folder, task)
    if raw is None:
        origin = "hub"
        hub_note = task_spec.hub_location(split)
        try:
            raw, source = _read_hub(task_spec, split, cache_dir)
        except DataError:
            raise
        except Exception as exc:  # offline, unknown id, HTTP errors: one message naming both places
            raise DataError(
                f"task {task!r} split {split!r}: not available. Tried the local mirror ({mirror_note}) and "
                f"the Hugging Face hub / web ({hub_note}: {type(exc).__name__}: {exc}). "
                "Point the mirror at a folder laid out like ../shared/data or go online."
            ) from exc
        log.info("%s/%s: fetched %s (%d rows)", task, split, source, raw.height)

    df = _normalise(raw, task_spec, split, source, origin, imdb_validation_size=imdb_validation_size)
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
        task_spec = _task_spec(task)
        _check_labels(df["label"], task_spec, source, "label")
        n_pair = df.height - df["text_pair"].null_count()
        if task_spec.pair and n_pair != df.height:
            raise DataError(
                f"{source}: task {task!r} is a pair task but {df.height - n_pair} text_pair value(s) are null"
            )
        if not task_spec.pair and n_pair:
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
