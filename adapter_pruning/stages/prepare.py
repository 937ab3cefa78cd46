"""Stage of rule ``prepare_data``: normalise one task's splits into Parquet files."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("adapter_pruning")


def prepare_data(spec: Mapping, outputs: Mapping[str, str | Path]) -> None:
    """Normalise every split of ``spec['task']`` and write one Parquet file per split.

    All splits are loaded and validated before the first file is written.
    """
    from .. import data

    task = spec["task"]
    mirror = Path(spec["mirror"]) if spec.get("mirror") else None
    if mirror is not None and spec.get("verify_checksums", True):
        data.verify_mirror(mirror, task)
    frames = {}
    for split in outputs:
        frames[split] = data.load_split(
            task,
            split,
            mirror=mirror,
            caps=spec.get("caps"),
            seed=spec.get("seed", 0),
            imdb_validation_size=spec.get("imdb_validation_size"),
        )
        log.info("%s/%s: %d examples", task, split, frames[split].height)
    for split, path in outputs.items():
        data.write_prepared(frames[split], path, task)
