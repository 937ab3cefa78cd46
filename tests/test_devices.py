"""adapter_pruning.devices: the run's device plan, why CUDA is not usable, what a job logs and records.

No GPU needed: ``fake_cuda`` replaces the parts of ``torch.cuda`` the module asks (build, init, device
count, properties) with the answers a CUDA machine, a too-old driver or an empty device list give,
with torch's own error messages.
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
import torch

from adapter_pruning import devices
from adapter_pruning.devices import DeviceError

# torch's messages (c10/cuda/CUDAFunctions.cpp and torch/cuda/__init__.py) for each failure
TOO_OLD = (
    "The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver by "
    "downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx "
    "Alternatively, go to: https://pytorch.org to install a PyTorch version that has been compiled with your "
    "version of the CUDA driver."
)
NO_DRIVER = (
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver "
    "from http://www.nvidia.com/Download/index.aspx"
)
NO_GPU = "No CUDA GPUs are available"


@pytest.fixture
def fake_cuda(monkeypatch):
    """``make(init_error=None, count=1, name=...)``: torch as a CUDA 13.0 build on a machine whose
    ``torch.cuda.init`` raises ``init_error`` (a message) or succeeds with ``count`` devices. Records
    the deterministic-algorithm calls instead of changing the process."""
    calls = {}

    def make(init_error: str | None = None, count: int = 1, name: str = "NVIDIA H200"):
        def init():
            if init_error is not None:
                raise RuntimeError(init_error)

        monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
        monkeypatch.setattr(torch.version, "cuda", "13.0")
        monkeypatch.setattr(torch.cuda, "init", init)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0 if init_error else count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: name)
        props = SimpleNamespace(name=name, total_memory=143 * 2**30, major=9, minor=0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: props)
        monkeypatch.setattr(
            torch, "use_deterministic_algorithms", lambda mode, warn_only=False: calls.update(det=(mode, warn_only))
        )
        monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        return calls

    return make


def test_this_cpu_build_names_itself_as_the_reason():
    if torch.backends.cuda.is_built():
        pytest.skip("torch here is a CUDA build")
    problem = devices.cuda_problem()
    assert "CPU-only build" in problem and torch.__version__ in problem and "TORCH_SPEC" in problem
    with pytest.raises(DeviceError, match=r"device 'cuda' requested, but CUDA is not usable here: torch .* CPU-only"):
        devices.resolve("cuda")
    assert devices.torch_cuda_build() is None  # read from torch/version.py, without importing it


@pytest.mark.parametrize(
    "error, count, reason",
    [
        (TOO_OLD, 0, "the NVIDIA driver is too old for this torch build"),
        (NO_DRIVER, 0, "no NVIDIA driver found"),
        (NO_GPU, 0, "no CUDA device visible"),
        (None, 0, "no CUDA device visible"),
        ("CUDA unknown error - this may be due to an incorrectly set up environment", 0, "CUDA failed to initialise"),
    ],
)
def test_cuda_problem_names_the_reason(fake_cuda, monkeypatch, error, count, reason):
    fake_cuda(init_error=error, count=count)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    problem = devices.cuda_problem()
    assert problem.startswith(reason), problem
    assert "built for CUDA 13.0" in problem and "CUDA_VISIBLE_DEVICES='3'" in problem
    if error:
        assert error.split(".")[0] in problem  # torch's own words are kept
    with pytest.raises(DeviceError, match="requested, but CUDA is not usable here: " + reason):
        devices.resolve("cuda")


def test_auto_never_falls_back_silently(fake_cuda, caplog):
    fake_cuda(init_error=TOO_OLD)
    with caplog.at_level(logging.INFO, logger="adapter_pruning.devices"):
        assert devices.resolve("auto") == torch.device("cpu")
    assert "device auto -> cpu" in caplog.text and "driver is too old" in caplog.text


def test_usable_cuda_is_logged_with_its_name_and_made_deterministic(fake_cuda, caplog):
    calls = fake_cuda(name="NVIDIA H100 80GB HBM3")
    with caplog.at_level(logging.INFO, logger="adapter_pruning.devices"):
        assert devices.resolve("cuda") == torch.device("cuda")
        assert devices.resolve("auto") == torch.device("cuda")
    assert "device cuda: cuda:0 NVIDIA H100 80GB HBM3 (143 GiB, compute capability 9.0" in caplog.text
    assert "device auto -> cuda: cuda:0 NVIDIA H100" in caplog.text
    assert calls["det"] == (True, True)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    assert devices.describe("cuda") == {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    with pytest.raises(DeviceError, match=r"'cuda:1': only 1 CUDA device"):
        devices.resolve("cuda:1")


def test_cpu_is_logged_and_described(caplog):
    with caplog.at_level(logging.INFO, logger="adapter_pruning.devices"):
        assert devices.resolve("cpu") == torch.device("cpu")
    assert "device cpu: " in caplog.text and "torch threads" in caplog.text
    assert devices.describe("cpu") == {"device": "cpu", "device_name": devices.cpu_name()}
    assert devices.cpu_name()
    already = torch.device("cpu")
    assert devices.resolve(already) is already
    for bad in ("tpu", "mps", 3):
        with pytest.raises(DeviceError):
            devices.resolve(bad)


def test_plan_device():
    gpu = lambda: (True, "NVIDIA GPU device file(s) /dev/nvidia0")  # noqa: E731
    none = lambda: (False, "no NVIDIA GPU here (no /dev/nvidia<N>)")  # noqa: E731
    assert devices.plan_device("cpu", probe=gpu)[0] == "cpu"
    assert devices.plan_device("cuda", probe=none)[0] == "cuda"
    assert devices.plan_device("auto", probe=gpu) == ("cuda", "device: auto, " + gpu()[1])
    assert devices.plan_device("auto", probe=none)[0] == "cpu"
    with pytest.raises(DeviceError, match="'gpu'"):
        devices.plan_device("gpu")


def test_run_device_is_planned_by_the_main_process_and_handed_to_jobs(monkeypatch, caplog):
    gpu = lambda: (True, "NVIDIA GPU device file(s) /dev/nvidia0")  # noqa: E731
    none = lambda: (False, "no NVIDIA GPU here (no /dev/nvidia<N>)")  # noqa: E731
    env = {}
    assert devices.run_device("auto", main=True, probe=none, environ=env) == "cpu"
    assert env == {devices.PLAN_VARIABLE: "cpu"}
    # a cluster job re-reads the workflow on a GPU node: it keeps the main process's plan
    assert devices.run_device("auto", main=False, probe=gpu, environ=env) == "cpu"
    assert devices.run_device("auto", main=False, probe=gpu, environ={}) == "cuda"  # no plan handed down
    # a GPU here but a CPU-only torch: auto plans the CPU and says why, an explicit cuda is refused before
    # any job runs
    monkeypatch.setattr(devices, "torch_cuda_build", lambda: None)
    env = {}
    with caplog.at_level("WARNING", logger="adapter_pruning.devices"):
        assert devices.run_device("auto", main=True, probe=gpu, environ=env) == "cpu" == env[devices.PLAN_VARIABLE]
    assert re.search(r"device: auto, NVIDIA GPU .*CPU-only build.*run on the CPU.*TORCH_SPEC", caplog.text)
    with pytest.raises(DeviceError, match=r"device: cuda: .*CPU-only build.*TORCH_SPEC"):
        devices.run_device("cuda", main=True, probe=gpu, environ={})
    with pytest.raises(DeviceError, match=r"device: cuda: .*CPU-only build"):
        devices.run_device("cuda", main=True, probe=none, environ={})
    assert devices.run_device("cuda", main=True, check_torch=False, probe=none, environ={}) == "cuda"  # --use-conda
    monkeypatch.setattr(devices, "torch_cuda_build", lambda: "13.0")
    env = {}
    assert devices.run_device("auto", main=True, probe=gpu, environ=env) == "cuda" == env[devices.PLAN_VARIABLE]


def test_gpu_visible_here(monkeypatch):
    monkeypatch.setattr(devices, "_nvidia_device_files", lambda: ["/dev/nvidia0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.gpu_visible_here() == (True, "NVIDIA GPU device file(s) /dev/nvidia0")
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        visible, why = devices.gpu_visible_here()
        assert not visible and "hides every GPU" in why
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(devices, "_nvidia_device_files", lambda: [])
    assert devices.gpu_visible_here()[0] is False


def test_torch_cuda_build_reads_version_py(tmp_path, monkeypatch):
    import importlib.util

    pkg = tmp_path / "torch"
    pkg.mkdir()
    spec = SimpleNamespace(submodule_search_locations=[str(pkg)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    for text, want in [
        ("cuda: Optional[str] = '12.6'\n", "12.6"),
        ("cuda = None\n", None),
        ('cuda: Optional[str] = "13.0"\n', "13.0"),
        ("nothing here\n", False),
    ]:
        (pkg / "version.py").write_text("__version__ = 'x'\n" + text)
        assert devices.torch_cuda_build() == want, text


def test_asks_for_gpu_and_job_resources(caplog):
    assert devices.asks_for_gpu({"gpu": 1})
    assert devices.asks_for_gpu({"gres": "gpu:a100:1"}) and devices.asks_for_gpu({"gpu_model": "a100"})
    assert not devices.asks_for_gpu({"gpu": 0, "gres": "", "mem_mb": 4000})
    assert not devices.asks_for_gpu({})
    with pytest.raises(DeviceError, match=r"rule evaluate was given a GPU .*set device: cuda"):
        devices.check_job_resources("cpu", "auto", {"gres": "gpu:1"}, "evaluate")
    with caplog.at_level(logging.WARNING, logger="adapter_pruning.devices"):
        devices.check_job_resources("cpu", "cpu", {"gpu": 1}, "train_adapter")
    assert "device: cpu: the job runs on the CPU" in caplog.text
    devices.check_job_resources("cuda", "auto", {"gpu": 1}, "evaluate")  # as planned
    devices.check_job_resources("cpu", "auto", {"gpu": 0}, "evaluate")
