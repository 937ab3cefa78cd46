"""pytest fixture ``slurm_cluster``: one real single-node SLURM cluster per test session.

Register it in ``workflow_tests/conftest.py`` with::

    from conftest_slurm import slurm_cluster  # noqa: F401  (session fixture: real local SLURM)

(``pytest_plugins`` is not allowed outside the rootdir conftest, so import the fixture instead;
pytest's default "prepend" import mode puts workflow_tests/ on sys.path for its conftest.py.)

The fixture skips the test, with the reason, when SLURM/munge are missing (and cannot be
apt-installed: only as root with ``CI`` set) or when not running as root. While the session runs
``SLURM_CONF`` points at the cluster, so ``snakemake --executor slurm`` subprocesses use it.
It yields a :class:`slurm_cluster.SlurmClusterInfo` (``.env``, ``.queue()``, ``.run(...)``,
``.logs_tail()``, ``.partition``, ``.cpus``).

Importing this module from several places is fine: all registrations share one cluster,
started on first use and stopped when the last user is finalised.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import slurm_cluster as _sc  # noqa: E402

_shared: dict = {"users": 0, "info": None, "cm": None}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster (partition ``debug``, node ``localhost``)."""
    if _shared["info"] is None:
        if not _sc.ensure_slurm_installed():
            pytest.skip(f"no local SLURM cluster: {_sc.slurm_unavailable_reason()}")
        cm = _sc.slurm_cluster(tmp_path_factory.mktemp("slurm"))
        info = cm.__enter__()  # raises SlurmClusterError (with daemon logs) if it cannot start
        _shared.update(cm=cm, info=info)
        print(f"\n[slurm_cluster] started in {info.startup_seconds:.1f} s: SLURM_CONF={info.conf}")
    _shared["users"] += 1
    try:
        yield _shared["info"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0 and _shared["cm"] is not None:
            cm, _shared["cm"], _shared["info"] = _shared["cm"], None, None
            cm.__exit__(None, None, None)
