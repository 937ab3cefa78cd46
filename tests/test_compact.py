"""The compact format of pruned adapters (adapter_pruning.compact): lossless round trips for every dtype,
encoding, method and scope, the dense folder rebuilt byte for byte and loaded with ``adapters``, and a
clear error (never a wrong tensor) for a truncated file or any flipped byte."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from adapter_pruning import artifacts, compact, masks
from adapter_pruning.io import CorruptFileError

METHODS = ("standard", "tropical", "random", "activation")
SCOPES = ("CU", "CB", "CN")


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _assert_bit_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert _bits(a[k]) == _bits(b[k]), k


def _sparse(shape, dtype, zero_share, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    t = t.masked_fill(torch.rand(shape, generator=g) < zero_share, 0)
    return t.to(dtype)


def test_round_trip_every_dtype_shape_and_sparsity(tmp_path):
    tensors = {}
    for i, dtype in enumerate((torch.float32, torch.bfloat16, torch.float16, torch.float64)):
        for share in (0.0, 0.5, 0.97, 1.0):
            tensors[f"{dtype}.{share}"] = _sparse((37, 11), dtype, share, seed=i)
    tensors["ints"] = torch.tensor([0, 3, 0, -7, 0, 0, 0, 0, 1], dtype=torch.int64)
    tensors["bools"] = torch.tensor([True, False, False, True])
    tensors["scalar"] = torch.tensor(0.0)
    tensors["empty"] = torch.zeros(0, 3)
    tensors["big"] = _sparse((300, 300), torch.float32, 0.995, seed=9)  # 90,000 entries: uint32 positions
    special = torch.zeros(20)
    special[[1, 4, 7]] = torch.tensor([-0.0, float("nan"), float("-inf")])
    tensors["special"] = special  # -0.0, NaN: nonzero bit patterns, kept bit for bit (15 bytes either way: bitmask)
    size = compact.save(tensors, tmp_path / compact.COMPACT_FILE, metadata={"format": "pt"})
    assert size == (tmp_path / compact.COMPACT_FILE).stat().st_size
    back, header = compact.read(tmp_path / compact.COMPACT_FILE)
    _assert_bit_equal(back, tensors)
    enc = {name: (encoding, n_values) for name, _, _, encoding, n_values in header["tensors"]}
    assert enc["torch.float32.0.0"] == ("dense", 37 * 11) and enc["torch.float32.0.5"][0] == "bitmask"
    assert enc["torch.float32.0.97"][0] == "indices" and enc["torch.float32.1.0"] == ("indices", 0)
    assert enc["special"] == ("bitmask", 3) and enc["scalar"] == ("indices", 0)
    assert header["metadata"] == {"format": "pt"} and header["weights_file"] == "adapter.safetensors"
    from safetensors import safe_open

    with safe_open(str(tmp_path / compact.COMPACT_FILE), "pt") as f:  # a plain safetensors file of a few parts
        dtypes = ("float32", "bfloat16", "float16", "float64", "int64", "bool")
        parts = {*(f"values.{d}" for d in dtypes), "bitmask", "indices.uint8", "indices.uint16", "indices.uint32"}
        assert set(f.keys()) == parts and list(f.metadata()) == ["compact"]
        assert f.get_tensor("indices.uint32").numel() == enc["big"][1]  # 90,000 entries: uint32 positions
        n_bitmask = sum(math.ceil(t.numel() / 8) for k, t in tensors.items() if enc[k][0] == "bitmask")
        assert f.get_tensor("bitmask").shape == (n_bitmask,)


@pytest.mark.parametrize("only", ["bitmask", "indices"])
def test_each_sparse_encoding_alone_round_trips(only):
    tensors = {f"t{s}": _sparse((64, 33), torch.float32, s, seed=3) for s in (0.0, 0.3, 0.9, 0.999)}
    stored, entries = compact.encode(tensors, encodings=(only,))
    assert {e[3] for e in entries} == {only}
    _assert_bit_equal(compact.decode(stored, entries), tensors)


def test_encoding_is_the_smallest_of_the_three():
    """Per tensor, the chosen encoding's stored bytes are the minimum over dense / bitmask / indices."""
    for share in (0.0, 0.5, 0.9, 0.93, 0.94, 0.99):
        t = {"w": _sparse((384, 24), torch.float32, share, seed=1)}
        got = {}
        for e in compact.ENCODINGS:
            stored, _ = compact.encode(t, encodings=(e,))
            got[e] = sum(v.numel() * v.element_size() for v in stored.values())
        stored, (entry,) = compact.encode(t)
        assert sum(v.numel() * v.element_size() for v in stored.values()) == min(got.values())
        assert got[entry[3]] == min(got.values())


def test_refuses_bad_arguments():
    with pytest.raises(ValueError, match="encodings"):
        compact.encode({"a": torch.ones(2)}, encodings=("zip",))
    with pytest.raises(ValueError, match="weights_file"):
        compact.to_bytes({"a": torch.ones(2)}, weights_file="model.bin")


# --------------------------------------------------------------------------- corruption


def _sample_file(tmp_path) -> tuple[Path, dict]:
    """A small compact file with each encoding: dense, bitmask, indices (uint8 positions)."""
    tensors = {
        "dense": _sparse((3, 5), torch.float32, 0.0, seed=0),
        "half": _sparse((8, 9), torch.bfloat16, 0.5, seed=1),
        "sparse": _sparse((10, 20), torch.float32, 0.97, seed=2),
    }
    path = tmp_path / compact.COMPACT_FILE
    compact.save(tensors, path, metadata={"format": "pt"})
    return path, tensors


def test_truncated_file_is_a_clear_error(tmp_path):
    path, _ = _sample_file(tmp_path)
    data = path.read_bytes()
    for n in sorted({0, 1, 7, 8, 9, 100, len(data) // 2, len(data) - 9, len(data) - 1}):
        path.write_bytes(data[:n])
        with pytest.raises(CorruptFileError, match=str(path)):
            compact.load(path)


def test_every_flipped_byte_is_an_error_or_changes_nothing(tmp_path):
    """Flip each byte of the file in turn (xor 0x01 and xor 0xFF): the reader raises CorruptFileError,
    or, where a flip leaves the meaning intact (none was found here), returns the very same tensors;
    a flip in the data section is always an error."""
    path, tensors = _sample_file(tmp_path)
    data = path.read_bytes()
    data_start = 8 + int.from_bytes(data[:8], "little")
    silent = []
    for i in range(len(data)):
        for mask in (0x01, 0xFF):
            flipped = bytearray(data)
            flipped[i] ^= mask
            path.write_bytes(bytes(flipped))
            try:
                back = compact.load(path)
            except CorruptFileError:
                continue
            assert i < data_start, f"flip at data byte {i} went unnoticed"
            _assert_bit_equal(back, tensors)
            silent.append(i)
    assert not silent


def test_a_forged_payload_with_a_matching_payload_digest_is_still_caught(tmp_path):
    """decode's own checks (and the tensors digest) catch data that was altered and re-signed."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    path, tensors = _sample_file(tmp_path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["compact"])
    stored = st_load(data)
    stored["values.float32"] = stored["values.float32"] + 1  # other values, digest recomputed below
    header.pop("payload_sha256")
    header["payload_sha256"] = compact.tensors_digest(sorted(stored.items()), prefix=compact._header_json(header))
    path.write_bytes(st_save(stored, metadata={"compact": compact._header_json(header).decode()}))
    with pytest.raises(CorruptFileError, match="tensors_sha256"):
        compact.load(path)
    stored, entries = compact.encode(tensors)
    stored["bitmask"][-1] ^= 0x80  # one more or one fewer kept entry than values stored
    with pytest.raises(CorruptFileError, match="bitmask marks"):
        compact.decode(stored, entries)
    stored, entries = compact.encode(tensors)
    stored["indices.uint8"] = stored["indices.uint8"].flip(0).contiguous()
    with pytest.raises(CorruptFileError, match="increasing"):
        compact.decode(stored, entries)
    stored, entries = compact.encode(tensors)
    stored["values.float32"] = torch.cat([stored["values.float32"], torch.ones(1)])
    with pytest.raises(CorruptFileError, match="not used to their ends"):
        compact.decode(stored, entries)
    stored["values.float32"] = stored["values.float32"][:-2]
    with pytest.raises(CorruptFileError, match="at least"):
        compact.decode(stored, entries)
    stored, entries = compact.encode({"odd": torch.tensor([1.0, 0.0] * 6 + [1.0])})  # 13 entries: 3 padding bits
    assert entries[0][3] == "bitmask"
    stored["bitmask"][-1] |= 0x80
    with pytest.raises(CorruptFileError, match="padding"):
        compact.decode(stored, entries)
    stored, entries = compact.encode(tensors)
    entries[0][3] = "zip"
    with pytest.raises(CorruptFileError, match="unknown encoding"):
        compact.decode(stored, entries)


def test_not_a_compact_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, str(tmp_path / "x.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CorruptFileError, match="not a compact adapter file"):
        compact.load(tmp_path / "x.safetensors")


# --------------------------------------------------------------------------- pruned folders


def _tiny_adapter(model_dir, out: Path, *, safetensors=True) -> Path:
    """A tiny seq_bn ReLU adapter (d = 32, r = 8) with a head, a few training steps, saved by ``adapters``."""
    from adapters import AutoAdapterModel, SeqBnConfig

    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(str(model_dir))
    model.add_adapter("mine", config=SeqBnConfig(reduction_factor=4, non_linearity="relu"))
    model.add_classification_head("mine", num_labels=2)
    with torch.no_grad():  # move the weights off their initial values (the up projection starts near zero)
        for n, p in model.named_parameters():
            if "adapters.mine" in n:
                p.add_(torch.randn_like(p) * 0.05)
    model.save_adapter(str(out), "mine", with_head=True, use_safetensors=safetensors)
    return out


@pytest.fixture(scope="module")
def tiny_sweep(tiny_model_dir, tmp_path_factory):
    """Every method x scope at p = 50, 90, 99 of a tiny adapter, pruned by the workflow's stage."""
    from adapter_pruning.stages.prune import prune_sweep

    root = tmp_path_factory.mktemp("compact")
    adapter = _tiny_adapter(tiny_model_dir, root / "adapter")
    layers = artifacts.read_adapter_layers(adapter)
    g = torch.Generator().manual_seed(0)
    A_hat = torch.stack([la.A * (torch.rand(la.A.shape, generator=g) > 0.3) for la in layers])
    B_hat = torch.stack([la.B * (torch.rand(la.B.shape, generator=g) > 0.3) for la in layers])
    artifacts.write_optimized(root / "optimized.safetensors", A_hat, B_hat, [la.prefix for la in layers])
    rms = {
        la.prefix: (torch.rand(la.A.shape[1] - 1, generator=g), torch.rand(la.A.shape[0], generator=g)) for la in layers
    }
    artifacts.write_input_rms(root / "calibration.safetensors", rms, n_examples=4, n_tokens=40)
    ps = [50.0, 90.0, 99.0]
    dirs = {}
    for scope in SCOPES:
        ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.25, "scope": scope}
        out = [root / scope / m / f"p{p:g}" for m in METHODS for p in ps]
        infos = prune_sweep(
            ids,
            list(METHODS),
            ps,
            adapter,
            root / "optimized.safetensors",
            out,
            calibration={"input_rms": root / "calibration.safetensors"},
        )
        for d, info in zip(out, infos):
            dirs[(scope, info["method"], info["p"])] = d
    return root, adapter, dirs


def test_every_method_and_scope_round_trips_bit_exact(tiny_sweep, tmp_path):
    """For each state: prune.json records the sizes, the compact file decodes to the dense file's
    tensors bit for bit (equal to the masks API's pruned layers), and expand rebuilds the folder with
    a byte-identical adapter.safetensors."""
    from safetensors.torch import load_file

    root, adapter, dirs = tiny_sweep
    assert len(dirs) == len(SCOPES) * len(METHODS) * 3
    for (scope, method, p), d in dirs.items():
        info = artifacts.verify_pruned(d)
        compact.verify_beside(d, info)
        dense, comp = d / "adapter.safetensors", d / compact.COMPACT_FILE
        assert info["dense_bytes"] == dense.stat().st_size and info["compact_bytes"] == comp.stat().st_size
        if p >= 90:
            assert info["compact_bytes"] < info["dense_bytes"], (scope, method, p)
        tensors = compact.load(comp)
        _assert_bit_equal(tensors, load_file(str(dense)))
        zeros = sum(int((t == 0).sum()) for t in tensors.values())
        assert zeros >= info["n_pruned"] > 0
        out = compact.expand(d, tmp_path / scope / method / f"p{p:g}")
        assert (out / "adapter.safetensors").read_bytes() == dense.read_bytes()
        assert sorted(f.name for f in out.iterdir()) == sorted(f.name for f in d.iterdir() if f.name != comp.name)
        for f in out.iterdir():
            assert f.read_bytes() == (d / f.name).read_bytes(), f.name


def test_compact_equals_the_masks_api_pruned_layers(tiny_sweep):
    """The decoded tensors are exactly masks.apply_masks of masks.pruning_masks (every method, scope)."""
    root, adapter, dirs = tiny_sweep
    state, name = artifacts.read_adapter_state(adapter)
    layers = masks.extract_layers(state, name)
    optimized = artifacts.read_optimized(root / "optimized.safetensors", layers)
    rms = artifacts.read_input_rms(root / "calibration.safetensors", layers)
    from adapter_pruning.methods.activation import activation_scores
    from adapter_pruning.methods.random_baseline import random_scores

    scores = {"random": random_scores(layers, 0), "activation": activation_scores(layers, rms)}
    for scope in SCOPES:
        for p in (50.0, 90.0, 99.0):
            got = masks.pruning_masks(layers, optimized, p, scope, scores=scores)
            for method in METHODS:
                expected = {**state, **masks.layers_to_state_dict(masks.apply_masks(layers, got[method]))}
                _assert_bit_equal(compact.load(dirs[(scope, method, p)] / compact.COMPACT_FILE), expected)


def test_load_adapter_equals_loading_the_dense_folder(tiny_sweep, tiny_model_dir):
    from adapters import AutoAdapterModel

    _, _, dirs = tiny_sweep
    d = dirs[("CU", "tropical", 90.0)]
    a = AutoAdapterModel.from_pretrained(str(tiny_model_dir))
    b = AutoAdapterModel.from_pretrained(str(tiny_model_dir))
    assert a.load_adapter(str(d), with_head=True, use_safetensors=True) == "mine"
    only = d.parent / "compact_only"
    only.mkdir()
    for f in d.iterdir():
        if f.name not in ("adapter.safetensors", "prune.json"):
            (only / f.name).write_bytes(f.read_bytes())
    assert compact.load_adapter(b, only, with_head=True) == "mine"
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    assert any("adapters.mine" in k for k in sa) and any("heads.mine" in k for k in sa)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_verify_beside_catches_a_modified_or_missing_compact_file(tiny_sweep, tmp_path):
    import shutil

    _, _, dirs = tiny_sweep
    d = tmp_path / "state"
    shutil.copytree(dirs[("CB", "random", 90.0)], d)
    f = d / compact.COMPACT_FILE
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x10
    f.write_bytes(bytes(data))
    info = artifacts.verify_pruned(d)  # the dense file is intact
    with pytest.raises(CorruptFileError, match="compact_sha256"):
        compact.verify_beside(d, info)
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        compact.verify_beside(d)  # without the record: the file's own checksum
    f.unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        compact.verify_beside(d, info)
    with pytest.raises(CorruptFileError, match="older version"):
        compact.verify_beside(dirs[("CB", "random", 90.0)], {"n_pruned": 1})


def test_pickle_weights_and_expand_refusals(tiny_model_dir, tmp_path):
    """A folder with pytorch_adapter.bin gets the compact file too; expand rebuilds the .bin, which plain
    load_adapter (its default, use_safetensors=False) loads; expand refuses an existing target."""
    from adapters import AutoAdapterModel

    src = _tiny_adapter(tiny_model_dir, tmp_path / "bin", safetensors=False)
    sizes = compact.write_beside(src)
    assert sizes["dense_bytes"] == (src / "pytorch_adapter.bin").stat().st_size
    compact.verify_beside(src, sizes)
    (src / "pytorch_adapter.bin").unlink()
    out = compact.expand(src, tmp_path / "rebuilt")
    assert (out / "pytorch_adapter.bin").is_file() and not (out / "adapter.safetensors").exists()
    model = AutoAdapterModel.from_pretrained(str(tiny_model_dir))
    assert model.load_adapter(str(out), with_head=True) == "mine"
    with pytest.raises(FileExistsError):
        compact.expand(src, out)
    with pytest.raises(FileNotFoundError, match="no compact adapter file"):
        compact.expand(tmp_path / "rebuilt", tmp_path / "again")


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_real_minilm_adapter_every_method_and_scope(real_rt_adapter, tmp_path):
    """A real MiniLM adapter (trained by the package on real Rotten Tomatoes data): every method x
    scope at p = 90 pruned by the stage, the compact file bit-exact and several times smaller, and the
    model loaded from the compact folder gives the dense folder's logits exactly."""
    from adapter_pruning import config, models
    from adapter_pruning.stages.prune import prune_sweep
    from adapter_pruning.stages.solve import tropical_solve

    adapter, train, _, _ = real_rt_adapter
    spec = config.fill_tropical_defaults({"tropical": {}})["tropical"]
    tropical_solve(spec, adapter, tmp_path / "opt.safetensors", tmp_path / "trace.parquet", tmp_path / "solve.json")
    layers = artifacts.read_adapter_layers(adapter)
    g = torch.Generator().manual_seed(0)
    rms = {
        la.prefix: (torch.rand(la.A.shape[1] - 1, generator=g), torch.rand(la.A.shape[0], generator=g)) for la in layers
    }
    artifacts.write_input_rms(tmp_path / "calib.safetensors", rms, n_examples=1, n_tokens=1)
    for scope in SCOPES:
        ids = {"model": "minilm", "task": "rotten_tomatoes", "seed": 0, "lam": 0.25, "scope": scope}
        out = [tmp_path / scope / m for m in METHODS]
        infos = prune_sweep(
            ids,
            list(METHODS),
            [90.0],
            adapter,
            tmp_path / "opt.safetensors",
            out,
            calibration={"input_rms": tmp_path / "calib.safetensors"},
        )
        for d, info in zip(out, infos):
            compact.verify_beside(d, artifacts.verify_pruned(d))
            assert info["dense_bytes"] > 6 * info["compact_bytes"], (scope, info["method"], info["retained"])
    d = tmp_path / "CU" / "tropical"
    dense_model, tok, name = models.load_trained("minilm", d)
    only = tmp_path / "only"
    only.mkdir()
    for f in d.iterdir():
        if f.name != "adapter.safetensors":
            (only / f.name).write_bytes(f.read_bytes())
    model = models._load_adapter_model(models.resolve_model("minilm"))
    assert compact.load_adapter(model, only, with_head=True, set_active=True) == name
    model.eval(), dense_model.eval()
    batch = tok(list(train["text"][:8]), padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, dense_model(**batch).logits)
