"""The SLURM machinery (fixture, profiles, plugin wiring) on a toy workflow, independent of the
real pipeline.

* ``slurm``-marked tests run workflow_tests/toy_slurm against a REAL single-node SLURM cluster
  (fixture ``slurm_cluster``, skipped when SLURM is not installed) with
  ``--executor slurm --workflow-profile profiles/slurm-test``, always under ``timeout -k``.
* The profile tests need no cluster: dry-runs of every profile, and a fake ``sbatch`` that
  records its command line to check what the profiles would ask SLURM for (GPUs, CPUs, memory,
  time, partition/account placeholders).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest_slurm import slurm_cluster  # noqa: E402,F401  (no-op if conftest.py registers it)
from slurm_cluster import PROFILES, TEST_PROFILE, run_snakemake  # noqa: E402

TOY = Path(__file__).resolve().parent / "toy_slurm" / "Snakefile"
JOB_ID_IN_FILE = re.compile(r"SLURM_JOB_ID=(\S+)")
# The failing toy run takes ~60-125 s on the test cluster (3 SLURM stages; the group of 4 jobs of 3 s
# runs them one after another, ~8.5 s each), the fixed rerun ~13-35 s;
# each run is bounded well above that so that a hang fails the test instead of blocking CI.
RUN_TIMEOUT = 300


def toy_args(*extra: str) -> list[str]:
    return ["-s", str(TOY), "--executor", "slurm", "--workflow-profile", str(TEST_PROFILE), *extra]


def job_id_in(path: Path) -> str:
    m = JOB_ID_IN_FILE.search(path.read_text())
    assert m, f"{path} records no SLURM_JOB_ID"
    return m.group(1)


def squeue_cpus(cluster, job_id: str) -> int:
    r = cluster.run("squeue", "--states=all", "--noheader", "-j", job_id, "-o", "%C")
    return int(r.stdout.strip())


# --------------------------------------------------------------------------------------------
# Real cluster. One scenario (each SLURM stage costs ~8-26 s here, so no separate clean run):
#   1. fail=True : make_input, the group of 4 `square` jobs finish, `summarize` fails;
#   2. fail=False: only `summarize` is resubmitted, the workflow completes;
#   3. again     : "Nothing to be done".


@pytest.fixture(scope="module")
def toy_runs(slurm_cluster, tmp_path_factory):  # noqa: F811
    wd = tmp_path_factory.mktemp("toy")
    # the grouped `square` jobs sleep 3 s each, so that jobs running side by side would overlap
    failed = run_snakemake(*toy_args("--config", "fail=True", "sleep=3"), cwd=wd, timeout=RUN_TIMEOUT)
    failed_log = wd / "logs" / "summarize.log"
    failed_log = failed_log.read_text() if failed_log.exists() else None
    mtimes = {p: p.stat().st_mtime_ns for p in sorted((wd / "results").rglob("*.txt"))}
    queue_after_failure = {j: s for j, s, _ in slurm_cluster.queue()}
    fixed = run_snakemake(*toy_args("--config", "fail=False", "sleep=3"), cwd=wd, timeout=RUN_TIMEOUT)
    again = run_snakemake(*toy_args("--config", "fail=False", "sleep=3"), cwd=wd, timeout=60)
    print(
        f"\n[toy] failing run {failed.seconds:.1f} s, fixed rerun {fixed.seconds:.1f} s, "
        f"no-op run {again.seconds:.1f} s"
    )
    return dict(
        wd=wd,
        failed=failed,
        failed_log=failed_log,
        mtimes=mtimes,
        queue_after_failure=queue_after_failure,
        fixed=fixed,
        again=again,
    )


@pytest.mark.slurm
def test_failing_job_fails_the_run_and_names_its_log(toy_runs):
    failed = toy_runs["failed"]
    assert not failed.timed_out, f"Snakemake hung instead of failing\n{failed}"
    assert failed.returncode != 0, str(failed)
    assert "Error in rule summarize" in failed.output, str(failed)
    assert "logs/summarize.log" in failed.output, str(failed)  # the rule's log: the cause
    assert "deliberate failure" in (toy_runs["failed_log"] or ""), toy_runs["failed_log"]
    # squeue mode: SLURM gives only the state; Snakemake names the SLURM log as well.
    assert "SLURM status is: 'FAILED'" in failed.output, str(failed)
    assert ".snakemake/slurm_logs/rule_summarize/" in failed.output, str(failed)
    ids = failed.slurm_job_ids
    assert len(ids) == 3, f"expected make_input, the group, summarize\n{failed}"
    assert toy_runs["queue_after_failure"].get(ids[-1]) == "FAILED", toy_runs["queue_after_failure"]
    assert sorted(p.name for p in toy_runs["mtimes"]) == ["0.txt", "1.txt", "2.txt", "3.txt", "input.txt"]


@pytest.mark.slurm
def test_rerun_after_fix_completes_without_redoing_finished_jobs(toy_runs):
    wd, fixed, again = toy_runs["wd"], toy_runs["fixed"], toy_runs["again"]
    assert not fixed.timed_out and fixed.returncode == 0, str(fixed)
    assert len(fixed.slurm_job_ids) == 1, str(fixed)  # only summarize was resubmitted
    assert "/rule_summarize/" in fixed.slurm_logs[0], fixed.slurm_logs
    assert re.search(r"summarize\s+1\n", fixed.output) and not re.search(r"(square|make_input)\s+\d", fixed.output), (
        str(fixed)
    )  # Snakemake's job stats table
    for path, mtime in toy_runs["mtimes"].items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rebuilt"
    assert "sum_of_squares=14" in (wd / "results" / "summary.txt").read_text()  # 0+1+4+9
    assert again.returncode == 0, str(again)
    assert "Nothing to be done" in again.output, str(again)
    assert again.slurm_job_ids == []


@pytest.mark.slurm
def test_jobs_really_ran_under_slurm(slurm_cluster, toy_runs):  # noqa: F811
    wd, failed, fixed = toy_runs["wd"], toy_runs["failed"], toy_runs["fixed"]
    # Snakemake's side: a run ID and one "submitted with SLURM jobid <id>" line per submission.
    assert failed.run_id and fixed.run_id and failed.run_id != fixed.run_id
    # SLURM's side: slurmctld knows these jobs, named after the run ID (squeue keeps finished
    # jobs for MinJobAge=3600 s).
    queue = {jid: (state, name) for jid, state, name in slurm_cluster.queue()}
    for jid in failed.slurm_job_ids[:2] + fixed.slurm_job_ids:
        run_id = failed.run_id if jid in failed.slurm_job_ids else fixed.run_id
        assert queue.get(jid) == ("COMPLETED", run_id), (jid, queue)
    # The jobs' side: every output was written inside one of those SLURM jobs.
    all_ids = set(failed.slurm_job_ids + fixed.slurm_job_ids)
    outputs = sorted((wd / "results").rglob("*.txt"))
    assert len(outputs) == 6
    for path in outputs:
        assert job_id_in(path) in all_ids, path
    assert job_id_in(wd / "results" / "summary.txt") == fixed.slurm_job_ids[0]
    # --slurm-keep-successful-logs (test profile): the SLURM logs stay, one per submission.
    for log in failed.slurm_logs + fixed.slurm_logs:
        assert Path(log).is_file() and ".snakemake/slurm_logs/" in log, log


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that are open at one time."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def square_interval(path: Path) -> tuple[float, float]:
    fields = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return float(fields["start"]), float(fields["end"])


def squeue_request(cluster, job_id: str) -> dict:
    """CPUs, time limit (minutes) and memory (MB) SLURM granted the job."""
    r = cluster.run("squeue", "--states=all", "--noheader", "-j", job_id, "-o", "%C|%l|%m")
    cpus, limit, mem = r.stdout.strip().split("|")
    parts = [int(x) for x in limit.replace("-", ":").split(":")]  # [[d-]h:]m:s
    minutes = sum(v * 60**k for k, v in enumerate(reversed(parts))) // 60
    return {"cpus": int(cpus), "minutes": minutes, "mem": mem}


@pytest.mark.slurm
def test_grouped_jobs_run_one_at_a_time_and_the_profiles_size_groups_for_that(slurm_cluster, toy_runs):  # noqa: F811
    """What the plugin really does with a group (its inner Snakemake gets --jobs 1), measured: the 4
    grouped 3-second `square` jobs of one submission never overlap. Every profile sizes a group for
    that concurrency (resources group_slots, one per job): one job's CPUs, memory, and the sum of
    the runtimes, which is what SLURM granted the submission."""
    wd, failed = toy_runs["wd"], toy_runs["failed"]
    squares = sorted((wd / "results" / "square").glob("*.txt"))
    assert len(squares) == 4
    group_ids = {job_id_in(p) for p in squares}
    assert len(group_ids) == 1, f"4 grouped jobs ran in {len(group_ids)} SLURM jobs"
    assert len(failed.slurm_job_ids) == 3 < 6  # 6 rule jobs (`all` is local), 3 submissions
    assert any("/group_toy_group" in log for log in failed.slurm_logs), failed.slurm_logs
    intervals = [square_interval(p) for p in squares]
    assert all(b - a >= 3 for a, b in intervals), intervals
    concurrency = max_overlap(intervals)
    starts = sorted(a for a, _ in intervals)
    print(
        f"\n[toy] grouped jobs started at {[round(t - starts[0], 1) for t in starts]} s; at most {concurrency} at once"
    )
    assert concurrency == 1, f"the plugin ran {concurrency} grouped jobs at once: resize the profiles' groups"
    (gid,) = group_ids
    granted = squeue_request(slurm_cluster, gid)
    # 4 one-thread jobs of 100 MB and 5 min, one at a time: 1 CPU, 100 MB, 4 x 5 min
    assert granted == {"cpus": concurrency * 1, "minutes": 4 * 5 // concurrency, "mem": "100M"}, granted
    for name in ("slurm", "slurm-paper", "slurm-test"):
        profile = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
        assert profile["resources"]["group_slots"] == concurrency, name
        assert profile["default-resources"]["group_slots"] == 1, name
        assert profile["set-resource-scopes"]["group_slots"] == "local", name


# --------------------------------------------------------------------------------------------
# Profiles without a cluster.


@pytest.mark.parametrize("profile", ["slurm", "slurm-paper", "slurm-test"])
def test_profile_parses_in_a_dry_run(profile, tmp_path):
    """Unknown keys and invalid plugin settings fail here (argparse / plugin validation);
    set-resources for rules the toy lacks are ignored."""
    run = run_snakemake(
        "-s",
        str(TOY),
        "-n",
        "--executor",
        "slurm",
        "--workflow-profile",
        str(PROFILES / profile),
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, str(run)
    assert f"Using workflow specific profile {PROFILES / profile}" in run.output
    assert re.search(r"total\s+7", run.output), str(run)


FAKE_SBATCH = """#!/bin/sh
# records the sbatch call (without the --wrap payload), then refuses the job
printf '%s\\n' "$*" | sed 's/ --wrap=.*//' >> "{calls}"
echo "fake sbatch: not submitting" >&2
exit 1
"""


@pytest.fixture
def fake_slurm(tmp_path):
    """PATH with a recording `sbatch` and inert `sinfo` (default partition "debug"), `sacct`,
    `sacctmgr` (knows account "proj"), `scontrol`, `squeue`: shows the sbatch command lines a
    profile produces, with no cluster."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls.txt"
    scripts = {
        "sbatch": FAKE_SBATCH.format(calls=calls),
        "sinfo": "#!/bin/sh\nprintf 'PARTITION\\ndebug*\\ngpuq\\n'\n",
        "sacctmgr": "#!/bin/sh\necho proj\n",
        "sacct": "#!/bin/sh\nexit 1\n",
        "scontrol": "#!/bin/sh\nexit 1\n",
        "squeue": "#!/bin/sh\nexit 1\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "TAP_SLURM_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    def sbatch(*args: str, cwd: Path, extra_env: dict | None = None) -> list[str]:
        calls.unlink(missing_ok=True)
        # (init seconds 1: Snakemake's exit otherwise waits for the next status-check cycle)
        run = run_snakemake(
            "-s",
            str(TOY),
            "--executor",
            "slurm",
            "--retries",
            "0",
            "--slurm-init-seconds-before-status-checks",
            "1",
            *args,
            cwd=cwd,
            timeout=120,
            env={**env, **(extra_env or {})},
        )
        assert not run.timed_out, str(run)
        assert calls.exists(), f"sbatch was never called\n{run}"
        return calls.read_text().splitlines()

    return sbatch


def toy_with_input(tmp_path: Path) -> Path:
    wd = tmp_path / "wd"
    (wd / "results").mkdir(parents=True)
    (wd / "results" / "input.txt").write_text("SLURM_JOB_ID=none\n")
    return wd


def one_call(calls: list[str], marker: str) -> str:
    hits = [c for c in calls if marker in c]
    assert len(hits) == 1, calls
    return hits[0]


def test_generic_profile_partition_and_account_placeholders(fake_slurm, tmp_path):
    wd = toy_with_input(tmp_path)
    # profiles/slurm groups the pipeline's rules; the toy's `square` jobs are grouped here instead
    args = (
        "--workflow-profile",
        str(PROFILES / "slurm"),
        "--groups",
        "square=toy_group",
        "--group-components",
        "toy_group=4",
    )
    # Unset: the cluster's default partition (the one `sinfo` stars), no -A.
    call = one_call(fake_slurm(*args, cwd=wd), "group_toy_group")
    assert " -p debug " in call and " -A " not in call, call
    # 4 one-thread jobs of 100 MB and 5 min in one submission, run one after another (group_slots)
    assert "--cpus-per-task=1" in call and "--mem 100" in call and " -t 20 " in call, call
    assert "--gpus" not in call and "--gres" not in call, call
    # Set through the environment.
    call = one_call(
        fake_slurm(*args, cwd=wd, extra_env={"TAP_SLURM_PARTITION": "gpuq", "TAP_SLURM_ACCOUNT": "proj"}),
        "group_toy_group",
    )
    assert " -p gpuq " in call and " -A proj " in call, call


def _paper_resources(rule: str, toy_rule: str) -> list[str]:
    profile = yaml.safe_load((PROFILES / "slurm-paper" / "config.yaml").read_text())
    return [f"{toy_rule}:{k}={v}" for k, v in profile["set-resources"][rule].items()]


def test_paper_profile_gpu_requests(fake_slurm, tmp_path):
    profile = yaml.safe_load((PROFILES / "slurm-paper" / "config.yaml").read_text())
    ev = profile["set-resources"]["evaluate"]
    tr = profile["set-resources"]["train_adapter"]
    wd = toy_with_input(tmp_path)
    base = ("--workflow-profile", str(PROFILES / "slurm-paper"))
    partitions = {"TAP_SLURM_PARTITION": "debug", "TAP_SLURM_GPU_PARTITION": "gpuq"}

    # The toy's `square` jobs stand in for evaluate: 6 of them in one group submission, one at a time.
    calls = fake_slurm(
        *base,
        "--config",
        "squares=6",
        "--groups",
        "square=toy_group",
        "--group-components",
        "toy_group=6",
        "--set-resources",
        *_paper_resources("evaluate", "square"),
        cwd=wd,
        extra_env=partitions,
    )
    call = one_call(calls, "group_toy_group")
    assert "--gpus=1 " in call + " " and "--gres" not in call, call  # ONE GPU for the group
    assert f"--cpus-per-gpu={ev['cpus_per_gpu']}" in call and "--cpus-per-task" not in call, call
    assert f" -t {6 * ev['runtime']} " in call, call  # the sum of the runtimes: they run one after another
    assert f"--mem {ev['mem_mb']} " in call, call  # one job's memory
    assert " -p gpuq " in call, call  # the GPU rules' partition

    # `make_input` stands in for train_adapter: --gpus=1 with --cpus-per-gpu, on the GPU partition.
    calls = fake_slurm(
        *base,
        "--set-resources",
        *_paper_resources("train_adapter", "make_input"),
        "--forcerun",
        "make_input",
        cwd=wd,
        extra_env=partitions,
    )
    call = one_call(calls, "rule_make_input")
    assert "--gpus=1" in call and f"--cpus-per-gpu={tr['cpus_per_gpu']}" in call, call
    assert f"--mem {tr['mem_mb']} " in call and f" -t {tr['runtime']} " in call, call
    assert "--cpus-per-task" not in call and " -p gpuq " in call, call

    # ... and for prune: no GPU, the CPU partition (TAP_SLURM_PARTITION); without a GPU partition
    # the GPU rules fall back to TAP_SLURM_PARTITION too.
    calls = fake_slurm(
        *base,
        "--set-resources",
        *_paper_resources("prune", "make_input"),
        "--forcerun",
        "make_input",
        cwd=wd,
        extra_env=partitions,
    )
    call = one_call(calls, "rule_make_input")
    assert "--gpus" not in call and "--gres" not in call and " -p debug " in call, call
    calls = fake_slurm(
        *base,
        "--set-resources",
        *_paper_resources("calibrate", "make_input"),
        "--forcerun",
        "make_input",
        cwd=wd,
        extra_env={"TAP_SLURM_PARTITION": "debug"},
    )
    call = one_call(calls, "rule_make_input")
    assert "--gpus=1" in call and " -p debug " in call, call


def test_paper_profile_scope_caps_gpu_numbers_per_group(fake_slurm, tmp_path):
    """A group of `gpu: 1` jobs asks for one GPU (gpu is a per-submission resource there), its jobs
    one after another."""
    wd = toy_with_input(tmp_path)
    calls = fake_slurm(
        "--workflow-profile",
        str(PROFILES / "slurm-paper"),
        "--config",
        "squares=3",
        "--groups",
        "square=toy_group",
        "--group-components",
        "toy_group=3",
        "--set-resources",
        "square:gpu=1",
        "square:cpus_per_gpu=2",
        "square:runtime=10",
        cwd=wd,
    )
    call = one_call(calls, "group_toy_group")
    assert "--gpus=1 " in call + " " and "--cpus-per-gpu=2" in call and " -t 30 " in call, call


def test_profiles_name_existing_rules_and_the_rules_declare_no_groups():
    """Cluster settings live in the profiles only: no rule has `group:`, and every rule a profile names
    (groups, set-resources) exists in the pipeline, so a renamed rule cannot silently lose them."""
    repo = PROFILES.parent
    sources = [repo / "Snakefile", *sorted((repo / "rules").glob("*.smk"))]
    text = "\n".join(p.read_text() for p in sources)
    # `rule name:` and `use rule other as name with:` (the unit scope's prune_units, evaluate_units_sweep)
    rules = set(re.findall(r"^\s*rule (\w+):", text, re.M)) | set(re.findall(r"^\s*use rule \w+ as (\w+)", text, re.M))
    assert {"prune", "evaluate", "evaluate_sweep", "train_adapter", "train_dense_small", "calibrate"} <= rules
    assert {"prune_units", "evaluate_units_sweep"} <= rules
    assert not re.search(r"^\s+group:", text, re.M)
    for name in ("slurm", "slurm-paper", "slurm-test"):
        profile = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
        groups = profile.get("groups", {})
        named = set(groups) | set(profile.get("set-resources", {}))
        assert named - {"square"} <= rules, (name, sorted(named - rules))
        # the many short jobs are grouped, pruning apart from scoring; a sweep job is one long job
        assert groups["prune"] != groups["evaluate"] and "evaluate_sweep" not in groups, name
        assert set(groups.values()) <= set(profile["group-components"]), name


def test_paper_profile_puts_every_torch_rule_on_a_gpu_and_the_rest_on_cpus():
    """Training, calibration and both scoring rules get a GPU and the GPU partition; the tropical solve
    and pruning (no model) get neither."""
    res = yaml.safe_load((PROFILES / "slurm-paper" / "config.yaml").read_text())["set-resources"]
    for rule in (
        "train_adapter",
        "train_dense_small",
        "calibrate",
        "evaluate",
        "evaluate_sweep",
        "evaluate_units_sweep",
    ):
        assert res[rule]["gpu"] == 1 and res[rule]["cpus_per_gpu"] >= 1, rule
        assert "TAP_SLURM_GPU_PARTITION" in res[rule]["slurm_partition"], rule
    for rule in ("tropical_solve", "prune", "prune_units"):
        assert not {"gpu", "gres", "gpu_model", "slurm_partition"} & set(res[rule]), rule
