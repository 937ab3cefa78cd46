"""Tests of the ``adapter-prune`` command line (adapter_pruning.cli).

Every adapter here is created and trained for a few steps with the ``adapters`` library directly
(not with this package's training code), saved with ``save_adapter``, pruned with ``cli.main``
in-process, and reloaded with ``load_adapter``. Most tests use the tiny random BERT; one uses the
packaged MiniLM and real Rotten Tomatoes data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapter_pruning import cli
from adapter_pruning.io import sha256_file

RF_MAP = {"1": 4, "default": 16}  # per-layer reduction factors: r = 8 on layer 1, r = 2 elsewhere (d = 32)


def _config(kind: str, **kw):
    import adapters

    return {
        "seq_bn": adapters.SeqBnConfig,
        "double_seq_bn": adapters.DoubleSeqBnConfig,
        "par_bn": adapters.ParBnConfig,
        "lora": adapters.LoRAConfig,
        "prefix_tuning": adapters.PrefixTuningConfig,
    }[kind](**kw)


def train_and_save(
    model_dir,
    out: Path,
    kind: str,
    *,
    name: str = "mine",
    steps: int = 3,
    with_head: bool = True,
    safetensors: bool = True,
    texts=None,
    labels=None,
    lr: float = 1e-3,
    seed: int = 0,
    **config,
):
    """Plain ``adapters`` code: add an adapter (+ 2-class head), train ``steps`` Adam steps, save it."""
    from adapters import AutoAdapterModel
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    model = AutoAdapterModel.from_pretrained(str(model_dir))
    model.add_adapter(name, config=_config(kind, **config))
    model.add_classification_head(name, num_labels=2)
    model.train_adapter(name)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if texts is None:
        texts = ["a fine film", "dull and long", "great acting", "a waste of time"] * 2
        labels = [1, 0, 1, 0] * 2
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        i = (step * 8) % len(texts)
        batch = tok(texts[i : i + 8], padding=True, truncation=True, max_length=48, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor(labels[i : i + 8]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_adapter(str(out), name, with_head=with_head, use_safetensors=safetensors)
    return out


def load_pruned(model_dir, pruned: Path):
    """``load_adapter`` a pruned directory into a fresh model; returns ``(model, name)``."""
    from adapters import AutoAdapterModel

    model = AutoAdapterModel.from_pretrained(str(model_dir))
    name = model.load_adapter(str(pruned), use_safetensors=True, set_active=True)
    return model, name


def check_round_trip(model_dir, src: Path, out: Path, method: str, p: float, *, n_layers: int) -> dict:
    """The pruned adapter reloads with ``load_adapter``; its zeros are exactly the masked entries of
    ``prune_mask.safetensors``; their number equals ``n_pruned``; every other entry is the original."""
    from safetensors.torch import load_file

    from adapter_pruning import masks

    d = out / method / f"p{p:g}"
    info = json.loads((d / "prune.json").read_text())
    assert info["method"] == method and info["p"] == p
    assert info["adapter_sha256"] == sha256_file(d / info["weights_file"])
    assert len(info["layers"]) == n_layers
    assert info["n_pruned"] == sum(layer["n_pruned"] for layer in info["layers"]) > 0
    assert info["retained"] == pytest.approx(1 - info["n_pruned"] / info["n_params"])
    assert set(os.listdir(d)) >= {"adapter_config.json", info["weights_file"], "prune.json", "prune_mask.safetensors"}
    model, name = load_pruned(model_dir, d)
    params = dict(model.named_parameters())
    mask = load_file(d / "prune_mask.safetensors")
    orig = cli.read_adapter_dir(src).state
    zeros = 0
    for key, m in mask.items():
        value = params[key].detach()
        assert torch.equal(value == 0, m.bool()), f"{key}: zeros differ from the mask"
        assert torch.equal(value[~m.bool()], orig[key][~m.bool()]), f"{key}: survivors changed"
        zeros += int((value == 0).sum())
    assert zeros == info["n_pruned"] == info["n_zero"]
    per_layer = [
        int(sum(int((params[k] == 0).sum()) for k in mask if k.startswith(layer["layer"] + ".")))
        for layer in info["layers"]
    ]
    assert per_layer == [layer["n_pruned"] for layer in info["layers"]]
    layers = masks.extract_layers(model, name)
    assert [layer.prefix for layer in layers] == [layer["layer"] for layer in info["layers"]]
    # --format both (the default): the compact file beside, the same tensors bit for bit, sizes recorded
    from adapter_pruning import compact

    assert info["format"] == "both" and info["compact_file"] == compact.COMPACT_FILE
    assert info["dense_bytes"] == (d / info["weights_file"]).stat().st_size
    assert info["compact_bytes"] == (d / compact.COMPACT_FILE).stat().st_size
    assert info["compact_sha256"] == sha256_file(d / compact.COMPACT_FILE)
    compact.verify_beside(d, info)
    return info


def run_cli(*argv) -> int:
    return cli.main([str(a) for a in argv] + ["--quiet"])


# --------------------------------------------------------------------------- adapter types, round trip


TYPES = {
    # case: (adapter kind, its config, save as safetensors?, number of adapter layers expected)
    "seq_bn_rf8_leave_out": ("seq_bn", {"reduction_factor": 8, "leave_out": [0]}, True, 2),
    "double_seq_bn_bin": ("double_seq_bn", {"non_linearity": "relu"}, False, 6),
    "par_bn": ("par_bn", {"reduction_factor": 4}, True, 3),
    "seq_bn_rf_mapping": ("seq_bn", {"reduction_factor": RF_MAP}, True, 3),
}


@pytest.fixture(scope="module")
def tiny3(tiny_model_factory):
    """Tiny random BERT with 3 layers (hidden 32)."""
    return tiny_model_factory(num_hidden_layers=3)


@pytest.mark.parametrize("case", list(TYPES))
def test_adapter_types_round_trip(case, tiny3, tmp_path):
    kind, config, safetensors, n_layers = TYPES[case]
    src = train_and_save(tiny3, tmp_path / "adapter", kind, safetensors=safetensors, **config)
    out = tmp_path / "out"
    rc = run_cli(src, "--model", tiny3, "--method", "tropical", "standard", "--p", 30, 90, "--out", out)
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["method"], r["p"]) for r in summary["results"]] == [
        ("tropical", 30.0),
        ("standard", 30.0),
        ("tropical", 90.0),
        ("standard", 90.0),
    ]
    for p in (30.0, 90.0):
        trop = check_round_trip(tiny3, src, out, "tropical", p, n_layers=n_layers)
        std = check_round_trip(tiny3, src, out, "standard", p, n_layers=n_layers)
        # standard prunes exactly as many parameters as tropical in every CU group (= layer)
        assert [x["n_pruned"] for x in std["layers"]] == [x["n_pruned"] for x in trop["layers"]]
        assert all(x["n_pruned"] <= p / 100 * x["n_params"] for x in trop["layers"])
        assert trop["adapter_type"] == {"seq_bn": "seq_bn", "double_seq_bn": "double_seq_bn", "par_bn": "par_bn"}[kind]
        assert trop["weights_file"] == ("adapter.safetensors" if safetensors else "pytorch_adapter.bin")
        # the head travels with the adapter, unchanged
        assert sha256_file(out / "tropical" / f"p{p:g}" / "head_config.json") == sha256_file(src / "head_config.json")
        for layer in trop["layers"]:
            assert layer["objective_final"] <= layer["objective_initial"]
            assert layer["lam1"] == pytest.approx(cli.DEFAULT_LAM_REL * layer["lambda_scale"])
            assert 1 <= layer["steps"] <= trop["solver"]["max_steps"] and 0 <= layer["zero_share_A_hat"] < 1
    prefixes = [x["layer"] for x in trop["layers"]]
    if kind == "double_seq_bn":  # two adapters per transformer layer, each its own CU group
        for k in range(3):
            assert f"bert.encoder.layer.{k}.attention.output.adapters.mine" in prefixes
            assert f"bert.encoder.layer.{k}.output.adapters.mine" in prefixes
    if case == "seq_bn_rf8_leave_out":
        assert not any(".layer.0." in x for x in prefixes)
    if case == "seq_bn_rf_mapping":  # layers of different width are solved in separate groups
        assert len(trop["solver"]["groups"]) == 2
        assert trop["layers"][1]["n_params"] == 8 * 33 + 32 * 8 + 32


def test_scopes_solver_values(tiny_model_dir, tmp_path):
    """CB and CN, Algorithm 1, method tropical_opt (optimized values), explicit λ: all run and are recorded."""
    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn", reduction_factor=4)
    for scope in ("CB", "CN"):
        out = tmp_path / scope
        assert run_cli(src, "--model", tiny_model_dir, "--scope", scope, "--p", 50, "--out", out) == 0
        check_round_trip(tiny_model_dir, src, out, "tropical", 50.0, n_layers=2)
    out = tmp_path / "alg1"
    rc = run_cli(
        src,
        "--model",
        tiny_model_dir,
        "--solver",
        "algorithm1",
        "--steps",
        4,
        "--tol",
        0,
        "--lam",
        0.5,
        "--lam2",
        0.1,
        "--method",
        "tropical",
        "tropical_opt",
        "--p",
        50,
        "--out",
        out,
    )
    assert rc == 0
    info = json.loads((out / "tropical_opt" / "p50" / "prune.json").read_text())
    assert info["solver"]["method"] == "algorithm1" and info["solver"]["groups"][0]["steps"] == 4
    assert info["values"] == "optimized" and info["n_zero"] >= info["n_pruned"]
    assert info["layers"][0]["lam2"] == pytest.approx(0.1 * info["layers"][0]["lambda_scale"])
    trop = check_round_trip(tiny_model_dir, src, out, "tropical", 50.0, n_layers=2)
    assert info["n_pruned"] == trop["n_pruned"] and info["slack"] == trop["slack"] > 0  # Tropical's mask
    from safetensors.torch import load_file

    mask = load_file(out / "tropical_opt" / "p50" / "prune_mask.safetensors")
    assert all(
        torch.equal(mask[k], v) for k, v in load_file(out / "tropical" / "p50" / "prune_mask.safetensors").items()
    )
    new = load_file(out / "tropical_opt" / "p50" / "adapter.safetensors")
    old = cli.read_adapter_dir(src).state
    assert any(not torch.equal(new[k][mask[k] == 0], old[k][mask[k] == 0]) for k in mask)  # Â, B̂ values
    # rerunning replaces an earlier output in place
    assert run_cli(src, "--model", tiny_model_dir, "--p", 50, "--out", out) == 0
    assert json.loads((out / "tropical" / "p50" / "prune.json").read_text())["values"] == "original"


def test_evaluate_tiny(tiny_model_dir, tmp_path, shared_data, capsys):
    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn")
    out = tmp_path / "out"
    rc = run_cli(
        src,
        "--model",
        tiny_model_dir,
        "--p",
        50,
        "--out",
        out,
        "--evaluate",
        "rotten_tomatoes",
        "--split",
        "test",
        "--max-examples",
        40,
        "--data-mirror",
        shared_data,
    )
    assert rc == 0
    ev = json.loads((out / "tropical" / "p50" / "prune.json").read_text())["evaluation"]
    assert ev["task"] == "rotten_tomatoes" and ev["split"] == "test" and ev["n_examples"] == 40
    assert set(ev["scores"]) == {"accuracy", "macro_f1"} and set(ev["unpruned_scores"]) == {"accuracy", "macro_f1"}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in summary["results"]] == ["full", "tropical"] and summary["precision"] == "fp32"
    assert "accuracy" in capsys.readouterr().out
    # --precision bf16 scores in bf16 (recorded); tf32 on the CPU is refused before anything is written
    common = ["--evaluate", "rotten_tomatoes", "--split", "test", "--max-examples", 40, "--data-mirror", shared_data]
    out16 = tmp_path / "out16"
    rc = run_cli(src, "--model", tiny_model_dir, "--p", 50, "--out", out16, "--precision", "bf16", *common)
    assert rc == 0 and json.loads((out16 / "summary.json").read_text())["precision"] == "bf16"
    expect_error(
        capsys,
        [src, "--model", tiny_model_dir, "--p", 50, "--out", tmp_path / "o32", "--precision", "tf32", "--device", "cpu"]
        + common,
        "--precision: 'tf32' is a CUDA precision",
    )
    assert not (tmp_path / "o32").exists()
    if not torch.cuda.is_available():  # --device cuda where CUDA is not usable: the reason, no traceback
        expect_error(
            capsys,
            [src, "--model", tiny_model_dir, "--p", 50, "--out", tmp_path / "oc", "--device", "cuda"] + common,
            "device 'cuda' requested, but CUDA is not usable here",
        )
        assert not (tmp_path / "oc").exists()
        # ... also where only the calibration pass would use it (no --evaluate)
        calib = ["--method", "activation", "--calibration", "rotten_tomatoes", "--data-mirror", shared_data]
        expect_error(
            capsys,
            [src, "--model", tiny_model_dir, "--p", 50, "--out", tmp_path / "ocal", "--device", "cuda"] + calib,
            "device 'cuda' requested, but CUDA is not usable here",
        )
        assert not (tmp_path / "ocal").exists()


def test_calibration_methods(tiny_model_dir, tmp_path, shared_data, capsys):
    """activation, taylor and sparsegpt with --calibration: count-matched to Tropical in every CN group,
    the calibration recorded; without --calibration they are refused by name, and taylor refuses a head
    that does not fit the task."""
    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn")
    out = tmp_path / "out"
    methods = ["tropical", "standard", "activation", "taylor", "sparsegpt", "tropical_pt", "standard_ps"]
    common = ["--model", tiny_model_dir, "--p", 60, "--scope", "CN", "--data-mirror", shared_data]
    rc = run_cli(
        src,
        *common,
        "--method",
        *methods,
        "--out",
        out,
        "--calibration",
        "rotten_tomatoes",
        "--calibration-examples",
        12,
        "--seed",
        3,
    )
    assert rc == 0, capsys.readouterr().err
    infos = {m: json.loads((out / m / "p60" / "prune.json").read_text()) for m in methods}
    for m in ("standard", "activation", "taylor", "sparsegpt"):
        assert [la["n_pruned"] for la in infos[m]["layers"]] == [la["n_pruned"] for la in infos["tropical"]["layers"]]
    assert infos["tropical_pt"]["n_pruned"] == infos["standard_ps"]["n_pruned"] >= infos["tropical"]["n_pruned"]
    cal = infos["taylor"]["calibration"]
    assert cal["task"] == "rotten_tomatoes" and cal["examples"] == 12 and cal["seed"] == 3 and cal["tokens"] > 12
    assert cal["statistics"] == ["input_rms", "second_moments", "gradients"]
    assert infos["sparsegpt"]["values"] == "updated" and infos["activation"]["values"] == "original"
    check_round_trip(tiny_model_dir, src, out, "activation", 60.0, n_layers=2)
    check_round_trip(tiny_model_dir, src, out, "taylor", 60.0, n_layers=2)
    assert infos["standard_ps"]["slack"] == 0 and infos["standard_ps"]["jaccard_standard"] == 1.0
    # without data: refused before anything is written
    err = expect_error(capsys, [src, *common, "--method", "tropical", "taylor", "sparsegpt", "--out", tmp_path / "o2"])
    assert "--method taylor sparsegpt needs calibration data" in err and "--calibration TASK" in err
    assert not (tmp_path / "o2").exists()
    expect_error(
        capsys,
        [src, *common, "--method", "taylor", "--calibration", "trec", "--out", tmp_path / "o3"],
        "--method taylor",
        "num_labels=2 but task 'trec' has 6 labels",
    )
    bare = train_and_save(tiny_model_dir, tmp_path / "b", "seq_bn", with_head=False)
    expect_error(
        capsys,
        [bare, *common, "--method", "taylor", "--calibration", "rotten_tomatoes", "--out", tmp_path / "o4"],
        "needs the adapter's prediction head",
    )


def test_format_dense_compact_both(tiny_model_dir, tmp_path, shared_data, capsys):
    """--format dense writes no compact file; --format compact writes no dense weights nor mask, and
    expand rebuilds exactly the dense folder --format both wrote (scores equal: --evaluate scored the
    same tensors); the printed table and summary.json give both sizes."""
    from adapter_pruning import compact

    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn", reduction_factor=2, steps=2)
    common = ["--model", tiny_model_dir, "--p", 90, "--evaluate", "rotten_tomatoes", "--split", "test"]
    common += ["--max-examples", 24, "--data-mirror", shared_data]
    outs = {}
    for fmt in ("dense", "compact", "both"):
        outs[fmt] = tmp_path / fmt
        assert cli.main([str(a) for a in [src, *common, "--format", fmt, "--out", outs[fmt]]]) == 0
        printed = capsys.readouterr().out
        assert "dense bytes" in printed.splitlines()[0] and "compact bytes" in printed.splitlines()[0]
    files = {fmt: {f.name for f in (outs[fmt] / "tropical" / "p90").iterdir()} for fmt in outs}
    common_files = {"adapter_config.json", "head_config.json", "model_head.safetensors", "prune.json"}
    assert files["dense"] == common_files | {"adapter.safetensors", "prune_mask.safetensors"}
    assert files["compact"] == common_files | {compact.COMPACT_FILE}
    assert files["both"] == files["dense"] | files["compact"]
    info = {fmt: json.loads((outs[fmt] / "tropical" / "p90" / "prune.json").read_text()) for fmt in outs}
    assert info["dense"]["compact_bytes"] is None and info["dense"]["compact_file"] is None
    assert info["compact"]["weights_file"] is None and info["compact"]["adapter_sha256"] is None
    assert info["compact"]["compact_bytes"] == info["both"]["compact_bytes"] < info["both"]["dense_bytes"]
    assert info["compact"]["evaluation"]["scores"] == info["both"]["evaluation"]["scores"]
    d = outs["compact"] / "tropical" / "p90"
    assert (d / compact.COMPACT_FILE).read_bytes() == (
        outs["both"] / "tropical" / "p90" / compact.COMPACT_FILE
    ).read_bytes()
    rebuilt = compact.expand(d, tmp_path / "rebuilt")
    both = outs["both"] / "tropical" / "p90"
    assert (rebuilt / "adapter.safetensors").read_bytes() == (both / "adapter.safetensors").read_bytes()
    rows = json.loads((outs["compact"] / "summary.json").read_text())["results"]
    assert rows[0]["dense_bytes"] == (src / "adapter.safetensors").stat().st_size and rows[0]["compact_bytes"] is None
    assert rows[1]["compact_bytes"] == (d / compact.COMPACT_FILE).stat().st_size


# --------------------------------------------------------------------------- errors


def expect_error(capsys, argv, *needles) -> str:
    rc = run_cli(*argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert err.startswith("adapter-prune: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_error_missing_inputs(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    expect_error(capsys, [tmp_path / "nope", "--out", out], str(tmp_path / "nope"), "no such adapter directory")
    (tmp_path / "empty").mkdir()
    expect_error(capsys, [tmp_path / "empty", "--out", out], "missing adapter_config.json")
    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn")
    (src / "adapter.safetensors").unlink()
    expect_error(capsys, [src, "--out", out], "missing adapter weights", "adapter.safetensors", "pytorch_adapter.bin")
    (src / "adapter.safetensors").write_bytes(b"not a safetensors file")
    expect_error(capsys, [src, "--out", out], "adapter.safetensors", "unreadable weight file")
    (src / "adapter_config.json").write_text("{")
    expect_error(capsys, [src, "--out", out], "adapter_config.json", "not readable JSON")
    assert not out.exists()


@pytest.mark.parametrize(
    "kind,config,needles",
    [
        ("double_seq_bn", {}, ("non_linearity=swish", "piecewise-linear")),  # Houlsby's default activation
        ("seq_bn", {"non_linearity": "gelu"}, ("non_linearity=gelu",)),
        ("lora", {}, ("architecture='lora'",)),
        ("prefix_tuning", {}, ("architecture='prefix_tuning'",)),
        ("seq_bn", {"use_gating": True}, ("use_gating=True",)),
    ],
)
def test_error_unsupported_adapter(kind, config, needles, tiny_model_dir, tmp_path, capsys):
    # prefix tuning shares tensors between layers, which safetensors refuses to save
    src = train_and_save(
        tiny_model_dir, tmp_path / "a", kind, steps=0, with_head=False, safetensors=kind != "prefix_tuning", **config
    )
    expect_error(capsys, [src, "--out", tmp_path / "out"], str(src / "adapter_config.json"), *needles)
    assert not (tmp_path / "out").exists()


def test_error_model_and_output(tiny_model_dir, tiny_model_factory, tmp_path, capsys):
    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn", with_head=False)
    out = tmp_path / "out"
    wide = tiny_model_factory(hidden_size=48)
    expect_error(capsys, [src, "--model", wide, "--out", out], "hidden_size 48", "d=32")
    expect_error(capsys, [src, "--model", tmp_path / "nomodel", "--out", out], "no such model directory")
    expect_error(capsys, [src, "--out", out, "--evaluate", "rotten_tomatoes"], "needs the adapter's prediction head")
    (out / "tropical" / "p90").mkdir(parents=True)
    expect_error(capsys, [src, "--out", out], "not an earlier adapter-prune output")
    expect_error(capsys, [src, "--out", tmp_path / "big", "--lam", 1000], "--lam 1000", "collapsed", "lam1 = ")
    assert not (tmp_path / "big").exists()
    assert run_cli(src, "--out", tmp_path / "big", "--lam", 1000, "--allow-collapse") == 0
    par = train_and_save(tiny_model_dir, tmp_path / "par", "par_bn", steps=0)  # mam_adapter init: B = 0
    expect_error(capsys, [par, "--out", tmp_path / "out2"], "all zeros")
    headed = train_and_save(tiny_model_dir, tmp_path / "h", "seq_bn", steps=0)
    expect_error(capsys, [headed, "--out", tmp_path / "out3", "--evaluate", "trec"], "num_labels=2", "6 labels")


@pytest.mark.parametrize(
    "argv",
    [
        ["x", "--out", "o", "--p", "100"],
        ["x", "--out", "o", "--p", "0"],
        ["x", "--out", "o", "--scope", "XX"],
        ["x", "--out", "o", "--method", "wanda"],
        ["x", "--out", "o", "--steps", "-1"],
        ["x"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: adapter-prune" in capsys.readouterr().err


def test_installed_console_script_help():
    """The pyproject entry point is installed (``pip install -e .``) and ``--help`` explains the options."""
    exe = Path(sys.executable).parent / "adapter-prune"
    if not exe.is_file():
        pytest.skip(f"{exe} not installed (run: .venv/bin/pip install -e . --no-deps)")
    res = subprocess.run([str(exe), "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for opt in (
        "--model",
        "--method",
        "--p",
        "--scope",
        "--lam",
        "--solver",
        "--steps",
        "--tol",
        "--calibration",
        "--evaluate",
        "--split",
        "--data-mirror",
        "OUT_DIR/<method>/p<p>",
    ):
        assert opt in res.stdout


# --------------------------------------------------------------------------- real model, real data


@pytest.mark.slow
def test_real_minilm_rotten_tomatoes(minilm_path, shared_data, tmp_path):
    """A seq_bn adapter trained a few steps on real Rotten Tomatoes text with the packaged MiniLM,
    pruned and scored on real validation data."""
    from adapter_pruning.data import load_split

    train = load_split("rotten_tomatoes", "train", mirror=shared_data, caps=64)
    src = train_and_save(
        minilm_path,
        tmp_path / "rt",
        "seq_bn",
        steps=8,
        texts=train["text"].to_list(),
        labels=train["label"].to_list(),
        name="rt",
    )
    out = tmp_path / "out"
    rc = run_cli(
        src,
        "--model",
        "minilm",
        "--method",
        "tropical",
        "standard",
        "--p",
        50,
        90,
        "--out",
        out,
        "--evaluate",
        "rotten_tomatoes",
        "--max-examples",
        100,
        "--data-mirror",
        shared_data,
    )
    assert rc == 0
    for method in ("tropical", "standard"):
        info = check_round_trip(minilm_path, src, out, method, 90.0, n_layers=6)
        assert info["layers"][0]["n_params"] == 24 * 385 + 384 * 24 + 384
        assert 0.1 <= info["retained"] < 0.9
        assert 0 <= info["evaluation"]["scores"]["accuracy"] <= 1
    assert len(json.loads((out / "summary.json").read_text())["results"]) == 5


def test_choices_match_the_package():
    """The CLI keeps its choices torch-free (fast ``--help``); they must equal the package's."""
    from adapter_pruning import data, masks, methods, tropical

    assert cli.METHODS == tuple(methods.names()) and cli.SCOPES == masks.ALL_SCOPES and cli.SOLVERS == tropical.METHODS
    assert cli.SPLITS == data.SPLITS
    from adapter_pruning import compact

    assert cli.COMPACT_FILE == compact.COMPACT_FILE
