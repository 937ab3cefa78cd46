"""A real, throw-away, single-node SLURM cluster on loopback, for tests.

Usage::

    from slurm_cluster import (ensure_slurm_installed, slurm_cluster, slurm_unavailable_reason,
                               run_snakemake, TEST_PROFILE)

    if not ensure_slurm_installed():
        pytest.skip(slurm_unavailable_reason())
    with slurm_cluster(tmp_dir) as info:        # SLURM_CONF (and PATH) exported while inside
        info.run("sbatch", "--wrap", "true")
        run = run_snakemake("--executor", "slurm", "--workflow-profile", str(TEST_PROFILE),
                            cwd=workdir, timeout=300)   # = timeout -k 10 300 python -m snakemake
        run.returncode, run.output, run.slurm_job_ids, run.run_id

(pytest: the session fixture in conftest_slurm.py wraps this.)

What it starts (all state under a fresh folder below ``workdir``):

* its own ``munged`` (as the ``munge`` user, own key and socket in a folder below /tmp, because
  munged refuses sockets whose parent folders the munge user cannot traverse);
* ``slurmctld -D -i`` and ``slurmd -D -N localhost`` with a generated ``slurm.conf``
  (no cgroups, no accounting database, ``CPUs`` = usable cores, ``RealMemory`` ~80 % of RAM but
  at least 16000 MB (memory is not consumable with CR_Core, so this only bounds one job's
  request), partition ``debug`` as default, ``MinJobAge=3600`` so that ``squeue`` status checks
  see finished jobs, free TCP ports picked at start so that two clusters, e.g. two engineers'
  test runs, can coexist on one machine);
* wrappers for ``srun``/``sbatch``/``squeue``/... first on PATH that set ``SLURM_CONF``: the
  Snakemake slurm-jobstep plugin drops every ``SLURM_*`` variable but the job identity before
  it calls ``srun`` inside the batch job, so srun would otherwise look for
  /etc/slurm/slurm.conf.

Everything has a bounded timeout; on exit (also on failure) the cluster's jobs are cancelled,
``scontrol shutdown`` is sent and any daemon of *this* cluster still alive is killed by its pid.
Needs root (SlurmUser=root, munged run as the munge user) and the Debian packages
``slurmctld slurmd slurm-client munge``. Measured here: start ~1.5 s, stop < 1 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The Debian packages providing everything used here.
APT_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
#: Binaries the cluster needs (daemons and the client commands Snakemake's plugin calls).
REQUIRED_BINARIES = ("slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "scancel", "srun", "munged")
#: Client commands wrapped so that they find this cluster's slurm.conf even without SLURM_CONF.
WRAPPED_CLIENTS = ("srun", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "sacct")
PARTITION = "debug"
MIN_NODE_MEM_MB = 16000
NODE = "localhost"

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def _which(name: str) -> str | None:
    path = shutil.which(name)
    if path is None:
        for d in _SBIN:
            cand = Path(d) / name
            if cand.is_file() and os.access(cand, os.X_OK):
                return str(cand)
    return path


def slurm_unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "a local SLURM cluster needs Linux"
    missing = [b for b in REQUIRED_BINARIES if _which(b) is None]
    if missing:
        return (
            "SLURM/munge binaries missing: "
            + ", ".join(missing)
            + " (install: apt-get install -y --no-install-recommends "
            + " ".join(APT_PACKAGES)
            + ")"
        )
    if os.geteuid() != 0:
        return "starting a local SLURM cluster needs root (SlurmUser=root, munged as munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "user 'munge' does not exist (the munge package creates it)"
    return None


def ensure_slurm_installed(*, apt_timeout: float = 600) -> bool:
    """True when a cluster can be started. When binaries are missing, we are root and the ``CI``
    environment variable is set, try ``apt-get install`` once first (bounded by apt_timeout)."""
    reason = slurm_unavailable_reason()
    if reason is None:
        return True
    if (
        reason.startswith("SLURM/munge binaries missing")
        and os.environ.get("CI")
        and os.geteuid() == 0
        and shutil.which("apt-get")
    ):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, timeout=apt_timeout)
            if r.returncode != 0:  # stale package lists: update once and retry
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=apt_timeout)
                subprocess.run(cmd, env=env, capture_output=True, timeout=apt_timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return slurm_unavailable_reason() is None


class SlurmClusterError(RuntimeError):
    """The cluster could not be started (message includes the daemons' log tails)."""


@dataclass
class SlurmClusterInfo:
    root: Path  # everything of this cluster lives here
    conf: Path  # slurm.conf (SLURM_CONF)
    log_dir: Path  # slurmctld.log, slurmd.log, munged.log, *.out
    munge_socket: Path
    cpus: int
    mem_mb: int  # RealMemory of the node
    ctld_port: int
    slurmd_port: int
    partition: str = PARTITION
    node: str = NODE
    startup_seconds: float = 0.0
    env: dict = field(default_factory=dict)  # os.environ + SLURM_CONF (+ sbin on PATH)

    def run(self, *cmd: str, timeout: float = 30, check: bool = False, **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster (text output, bounded)."""
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=check, **kw
        )

    def queue(self) -> list[tuple[str, str, str]]:
        """(job id, state, name) of every job slurmctld still remembers (MinJobAge=3600 s)."""
        r = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%j")
        return [tuple(line.split("|", 2)) for line in r.stdout.splitlines() if "|" in line]

    def logs_tail(self, n: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out", "slurmd.out", "munged.out"):
            p = self.log_dir / name
            if p.exists() and p.stat().st_size:
                lines = p.read_text(errors="replace").splitlines()[-n:]
                out.append(f"--- {p} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _usable_cpus() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, n)


def _hardware(slurmd: str) -> dict[str, int]:
    """CPUs / RealMemory as slurmd itself detects them (`slurmd -C`)."""
    try:
        out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    hw = {}
    for tok in out.split():
        key, _, val = tok.partition("=")
        if key in ("CPUs", "RealMemory") and val.isdigit():
            hw[key] = int(val)
    return hw


SLURM_CONF_TEMPLATE = """\
# Generated by workflow_tests/slurm_cluster.py: single node on loopback, for tests only.
ClusterName={cluster_name}
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Schedule batch jobs at submit time (default: up to 3 s delay per job).
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
EnforcePartLimits=ALL
MailProg=/bin/true
# squeue-based status checks need finished jobs to stay visible (the Snakemake SLURM plugin falls
# back to sacct when MinJobAge < 3 x init seconds), and the tests read every job's final state from
# squeue after a run, which takes longer than SLURM's default 300 s on a loaded 2-core machine:
# keep them an hour.
MinJobAge=3600
# Use the CPUs/RealMemory below even where the hardware differs (memory is not a consumable
# resource with CR_Core: RealMemory only bounds what a single job may ask for).
SlurmdParameters=config_overrides
KillWait=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={log_dir}/slurmctld.log
SlurmdLogFile={log_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _wait(pred, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _stop_process(p: subprocess.Popen | None, timeout: float = 10) -> None:
    if p is None or p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def _pids_of_cluster(root: Path) -> list[int]:
    """Processes (e.g. orphaned slurmstepd) whose command line or cwd points into root."""
    pids = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if str(root) in cmd or f"SLURM_CONF={root}/".encode() in env:
            pids.append(int(d.name))
    return pids


@contextlib.contextmanager
def slurm_cluster(
    workdir: str | os.PathLike,
    *,
    cpus: int | None = None,
    mem_mb: int | None = None,
    start_timeout: float = 60,
    stop_timeout: float = 20,
    set_environ: bool = True,
) -> Iterator[SlurmClusterInfo]:
    """Start a single-node SLURM cluster whose files live in a new folder below ``workdir``;
    yield a :class:`SlurmClusterInfo`; stop it (even on failure) on exit.

    With ``set_environ`` (default) ``os.environ["SLURM_CONF"]`` points at the cluster while
    inside the block (and sbin folders are on PATH), so that child processes such as Snakemake
    and its SLURM plugin talk to it; the previous values are restored afterwards.
    """
    reason = slurm_unavailable_reason()
    if reason:
        raise SlurmClusterError(reason)
    t0 = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir=workdir)).resolve()
    log_dir = root / "log"
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    procs: dict[str, subprocess.Popen] = {}
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    logs: list = []
    info: SlurmClusterInfo | None = None
    # munged checks that every folder above its socket is traversable by everyone and that its
    # own folder belongs to it: keep its files in a short folder directly below /tmp.
    munge_dir = Path(tempfile.mkdtemp(prefix="slurm-munge-", dir="/tmp"))

    def _popen(name, cmd, **kw):
        f = open(log_dir / f"{name}.out", "ab")
        logs.append(f)
        procs[name] = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kw
        )
        return procs[name]

    def _fail(msg):
        raise SlurmClusterError(f"{msg} (after {time.monotonic() - t0:.1f} s)\n" + (info.logs_tail() if info else ""))

    try:
        munge = pwd.getpwnam("munge")
        os.chmod(munge_dir, 0o755)
        os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chown(key, munge.pw_uid, munge.pw_gid)
        os.chmod(key, 0o400)
        munge_socket = munge_dir / "munge.socket"

        slurmd_bin, slurmctld_bin = _which("slurmd"), _which("slurmctld")
        hw = _hardware(slurmd_bin)
        ncpu = cpus or min(_usable_cpus(), hw.get("CPUs", 10**6))
        # ~80 % of RAM, but at least MIN_NODE_MEM_MB so that the pipeline's rules (mem_mb up to
        # 8000, groups capped at 8000 by profiles/slurm-test) are admitted on small CI machines.
        mem = mem_mb or max(MIN_NODE_MEM_MB, int(0.8 * hw.get("RealMemory", 4096)))
        ctld_port, slurmd_port = _free_ports(2)
        conf = root / "slurm.conf"
        conf.write_text(
            SLURM_CONF_TEMPLATE.format(
                cluster_name=f"t{ctld_port}",
                ctld_port=ctld_port,
                slurmd_port=slurmd_port,
                munge_socket=munge_socket,
                root=root,
                log_dir=log_dir,
                node=NODE,
                cpus=ncpu,
                mem_mb=mem,
                partition=PARTITION,
            )
        )

        # Snakemake's slurm-jobstep plugin strips every SLURM_* variable except the job identity
        # (SLURM_CONF included) before it calls `srun` inside the batch job, and srun then looks
        # for /etc/slurm/slurm.conf or DNS SRV records. A wrapper first on PATH (PATH survives,
        # sbatch runs with --export=ALL) puts SLURM_CONF back for the client commands.
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for tool in WRAPPED_CLIENTS:
            real = _which(tool)
            if real is None:
                continue
            w = bin_dir / tool
            w.write_text(
                f'#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))}\nexport SLURM_CONF\nexec {shlex.quote(real)} "$@"\n'
            )
            w.chmod(0o755)
        env = dict(os.environ)
        env["SLURM_CONF"] = str(conf)
        path_parts = [str(bin_dir)] + env.get("PATH", "").split(os.pathsep)
        env["PATH"] = os.pathsep.join(path_parts + [d for d in _SBIN if d not in path_parts])
        for var in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if var != "SLURM_CONF":  # a stray job context must not leak into the test cluster
                del env[var]

        info = SlurmClusterInfo(
            root=root,
            conf=conf,
            log_dir=log_dir,
            munge_socket=munge_socket,
            cpus=ncpu,
            mem_mb=mem,
            ctld_port=ctld_port,
            slurmd_port=slurmd_port,
            env=env,
        )

        _popen(
            "munged",
            [
                _which("munged"),
                "--foreground",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
                f"--log-file={munge_dir / 'munged.log'}",
            ],
            user=munge.pw_uid,
            group=munge.pw_gid,
            extra_groups=[],
        )
        if (
            not _wait(lambda: munge_socket.exists() or procs["munged"].poll() is not None, min(15, start_timeout))
            or procs["munged"].poll() is not None
        ):
            with contextlib.suppress(OSError):
                shutil.copy(munge_dir / "munged.log", log_dir / "munged.log")
            _fail("munged did not start")

        _popen("slurmctld", [slurmctld_bin, "-D", "-i", "-f", str(conf)])
        _popen("slurmd", [slurmd_bin, "-D", "-N", NODE, "-f", str(conf)])

        state = {"last": ""}

        def node_idle():
            for name, p in procs.items():
                if p.poll() is not None:
                    _fail(f"{name} exited with code {p.returncode}")
            try:
                r = info.run("sinfo", "--noheader", "-n", NODE, "-o", "%t", timeout=10)
            except subprocess.TimeoutExpired:
                return False
            state["last"] = r.stdout.strip() or r.stderr.strip()
            return state["last"] == "idle"

        if not _wait(node_idle, start_timeout, 0.25):
            _fail(f"node {NODE} not idle within {start_timeout} s (sinfo: {state['last']!r})")
        info.startup_seconds = time.monotonic() - t0
        if set_environ:
            os.environ["SLURM_CONF"] = env["SLURM_CONF"]
            os.environ["PATH"] = env["PATH"]
        yield info
    finally:
        if set_environ:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if info is not None:
            _shutdown(info, procs, stop_timeout)
        if (munge_dir / "munged.log").exists():
            with contextlib.suppress(OSError):
                shutil.copy(munge_dir / "munged.log", log_dir / "munged.log")
        _stop_process(procs.get("munged"), 5)
        for f in logs:
            f.close()
        shutil.rmtree(munge_dir, ignore_errors=True)


def _shutdown(info: SlurmClusterInfo, procs: dict, timeout: float) -> None:
    ctld, slurmd = procs.get("slurmctld"), procs.get("slurmd")
    alive = [p for p in (ctld, slurmd) if p is not None and p.poll() is None]
    if alive and ctld is not None and ctld.poll() is None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            info.run("scancel", "--full", "--user", str(os.getuid()), timeout=10)
            _wait(lambda: not [j for j in info.queue() if j[1] in ("RUNNING", "COMPLETING", "PENDING")], 10, 0.5)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            info.run("scontrol", "shutdown", timeout=10)
        _wait(lambda: all(p.poll() is not None for p in alive), timeout, 0.2)
    for p in (slurmd, ctld):
        _stop_process(p, 5)
    # Orphaned job steps (slurmstepd, user processes) of this cluster only.
    for pid in _pids_of_cluster(info.root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# Running Snakemake against the cluster (shared by the toy test and the pipeline's SLURM test).

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
TEST_PROFILE = PROFILES / "slurm-test"

#: "Job 3 has been submitted with SLURM jobid 17 (log: /abs/.snakemake/slurm_logs/rule_x/17.log)."
SUBMITTED_RE = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$", re.M)
#: "SLURM run ID: <uuid>" (also the SLURM job name of every submission of that run)
RUN_ID_RE = re.compile(r"^SLURM run ID: (\S+)", re.M)


@dataclass
class SnakemakeRun:
    cmd: list
    returncode: int
    output: str  # stdout + stderr
    seconds: float

    @property
    def timed_out(self) -> bool:  # killed by `timeout` (124) or its -k SIGKILL (137)
        return self.returncode in (124, 137, -9)

    @property
    def slurm_job_ids(self) -> list[str]:
        return [m.group(1) for m in SUBMITTED_RE.finditer(self.output)]

    @property
    def slurm_logs(self) -> list[str]:
        return [m.group(2) for m in SUBMITTED_RE.finditer(self.output)]

    @property
    def run_id(self) -> str | None:
        m = RUN_ID_RE.search(self.output)
        return m.group(1) if m else None

    def __str__(self) -> str:
        return (
            f"$ {shlex.join(map(str, self.cmd))}\n-> rc={self.returncode} after "
            f"{self.seconds:.1f} s\n{self.output[-6000:]}"
        )


def snakemake_command(*args: str, timeout: int = 300) -> list[str]:
    """``timeout -k 10 <timeout> <python> -m snakemake <args>``: a hung Snakemake (e.g. waiting
    on a status command that never answers, where it also ignores SIGTERM) fails instead of
    blocking CI."""
    return ["timeout", "-k", "10", str(int(timeout)), sys.executable, "-m", "snakemake", *args]


def run_snakemake(*args: str, cwd: str | os.PathLike, timeout: int = 300, env: dict | None = None) -> SnakemakeRun:
    """Run Snakemake (bounded by ``timeout``) in ``cwd``; ``env`` defaults to os.environ, which
    holds SLURM_CONF while inside :func:`slurm_cluster`."""
    cmd = snakemake_command(*args, timeout=timeout)
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout + 30,
        )
        rc, out = r.returncode, r.stdout
    except subprocess.TimeoutExpired as e:  # `timeout` itself did not end it: belt and braces
        rc = 124
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    return SnakemakeRun(cmd=cmd, returncode=rc, output=out, seconds=time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    """``python workflow_tests/slurm_cluster.py [--minutes N] [DIR]``: start a cluster for manual
    experiments, print the environment to use it, stop it on Ctrl-C or after N minutes."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("dir", nargs="?", default=tempfile.gettempdir())
    ap.add_argument("--minutes", type=float, default=60)
    args = ap.parse_args(argv)
    if not ensure_slurm_installed():
        print(f"cannot start: {slurm_unavailable_reason()}", file=sys.stderr)
        return 2

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` also stops the cluster cleanly
    with slurm_cluster(args.dir, set_environ=False) as info:
        print(
            f"# cluster up after {info.startup_seconds:.1f} s ({info.cpus} CPUs, partition "
            f"{info.partition}); in another shell:\n"
            f"export SLURM_CONF={info.conf} PATH={info.root / 'bin'}:$PATH\n"
            f"timeout -k 10 600 .venv/bin/snakemake --executor slurm "
            f"--workflow-profile profiles/slurm-test ...\n"
            f"# Ctrl-C (or {args.minutes:g} min) stops it",
            flush=True,
        )
        try:
            time.sleep(args.minutes * 60)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
