"""The stage functions behind the rules, on a tiny random BERT and real data: pruning (tensor work, no
backbone) and scoring (one path for every state) write identical files one state per job or one sweep
per job, score exactly what the former prune-and-score path scored; solve.json and prune.json carry
what the docs promise."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from adapter_pruning import artifacts, config
from adapter_pruning.data import load_split, write_prepared
from adapter_pruning.stages.evaluate import evaluate_states
from adapter_pruning.stages.prune import prune_states, prune_sweep
from adapter_pruning.stages.solve import tropical_solve
from adapter_pruning.training import TrainConfig, train_adapter


@pytest.fixture(scope="module")
def trained(tiny_model_dir, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    paths = {}
    for split, cap in (("train", 64), ("validation", 24), ("test", 24)):
        paths[split] = root / f"{split}.parquet"
        write_prepared(load_split("trec", split, mirror=shared_data, caps=cap), paths[split], "trec")
    cfg = TrainConfig(
        steps=4, eval_every=2, batch_size=8, max_length=32, eval_batch_size=24, threads=1, device="cpu", progress=False
    )
    train_adapter(
        str(tiny_model_dir),
        "trec",
        load_split("trec", "train", mirror=shared_data, caps=64),
        load_split("trec", "validation", mirror=shared_data, caps=24),
        root / "adapter",
        cfg,
    )
    spec = config.fill_tropical_defaults({"tropical": {}})["tropical"]
    tropical_solve(spec, root / "adapter", root / "optimized.safetensors", root / "trace.parquet", root / "solve.json")
    return root, paths


def test_solve_json_records_each_layer(trained):
    root, _ = trained
    info = json.loads((root / "solve.json").read_text())
    layers = artifacts.read_adapter_layers(root / "adapter")
    assert info["gauge"] == "conserved" and [rec["layer"] for rec in info["layers"]] == [la.prefix for la in layers]
    for rec in info["layers"]:
        assert set(rec) >= {
            "lam1",
            "lam2",
            "lambda_scale",
            "steps",
            "objective_start",
            "objective_end",
            "zeros_A_hat",
            "zeros_B_hat",
        }
        assert rec["lam1"] == pytest.approx(0.5 * rec["lambda_scale"])


IDS = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CU", "method": "tropical"}
PS = [90.0, 50.0, 10.0]


def _splits(paths):
    return {"validation": paths["validation"], "test": paths["test"]}


@pytest.fixture(scope="module")
def pruned(trained):
    """Three tropical CU states pruned one per call (per_state jobs) and all in one call (a sweep)."""
    root, _ = trained
    for p in PS:
        prune_states(IDS, [p], root / "adapter", root / "optimized.safetensors", [root / "one" / f"p{p:g}"])
    infos = prune_states(
        IDS, PS, root / "adapter", root / "optimized.safetensors", [root / "sweep" / f"p{p:g}" for p in PS]
    )
    return infos


def test_prune_per_state_and_per_sweep_write_identical_folders(trained, pruned):
    root, _ = trained
    for p, info in zip(PS, pruned):
        a, b = root / "one" / f"p{p:g}", root / "sweep" / f"p{p:g}"
        assert sorted(f.name for f in a.iterdir()) == sorted(f.name for f in b.iterdir())
        for f in a.iterdir():
            assert f.read_bytes() == (b / f.name).read_bytes(), f.name
        assert json.loads((a / "prune.json").read_text()) == info
        assert artifacts.verify_pruned(b)["n_pruned"] == info["n_pruned"]
        assert 0 < info["jaccard_standard"] <= 1 and 0 <= info["pruned_outside_standard"] < 1
        assert info["lam"] == 0.5 and info["p"] == p
    with pytest.raises(ValueError, match="3 percentages but 2 output folders"):
        prune_states(IDS, PS, root / "adapter", root / "optimized.safetensors", ["x1", "x2"])


def test_prune_sweep_over_methods_writes_each_methods_folders(trained, pruned):
    """prune_sweep (rule prune in per_sweep mode: every method and p of one scope) writes, method-major,
    the folders prune_states writes for each method alone: here tropical's equal the fixture's."""
    root, _ = trained
    ids = {k: v for k, v in IDS.items() if k != "method"}
    methods = ["standard", "tropical", "random"]
    out = [root / "multi" / m / f"p{p:g}" for m in methods for p in PS]
    infos = prune_sweep(ids, methods, PS, root / "adapter", root / "optimized.safetensors", out)
    assert [(i["method"], i["p"]) for i in infos] == [(m, p) for m in methods for p in PS]
    for p in PS:
        a, b = root / "sweep" / f"p{p:g}", root / "multi" / "tropical" / f"p{p:g}"
        for f in a.iterdir():
            assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    by = {(i["method"], i["p"]): i for i in infos}
    for p in PS:  # count-matched to Tropical in every method
        assert by[("standard", p)]["n_pruned"] == by[("random", p)]["n_pruned"] == by[("tropical", p)]["n_pruned"]
    with pytest.raises(ValueError, match="3 methods x 3 percentages but 2 output folders"):
        prune_sweep(ids, methods, PS, root / "adapter", root / "optimized.safetensors", out[:2])


def test_pruned_folder_is_the_adapter_folder_with_masked_weights(trained, pruned, tiny_model_dir):
    """Every file but adapter.safetensors is the trained adapter's, byte for byte; adapter.safetensors
    has the original keys, dtypes and metadata, real zeros where prune.json says, and is byte-identical
    to what the adapters library saves from a model holding the pruned weights (the old way of saving)."""
    from safetensors import safe_open

    from adapter_pruning import masks, models

    root, _ = trained
    src, dst = root / "adapter", root / "sweep" / "p90"
    files = {f.name for f in src.iterdir() if not f.name.startswith(".")}
    assert {f.name for f in dst.iterdir()} == files | {"prune.json", "adapter.compact.safetensors"}
    for name in files - {"adapter.safetensors"}:
        assert (src / name).read_bytes() == (dst / name).read_bytes(), name
    with safe_open(str(src / "adapter.safetensors"), "pt") as a, safe_open(str(dst / "adapter.safetensors"), "pt") as b:
        assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
        assert all(a.get_tensor(k).dtype == b.get_tensor(k).dtype for k in a.keys())
    model, _, name = models.load_trained(str(tiny_model_dir), dst)  # loadable
    layers = masks.extract_layers(model, name)
    zeros = sum(int((t == 0).sum()) for la in layers for t in (la.A, la.B, la.up_bias))
    assert zeros >= pruned[0]["n_pruned"] > 0
    model.save_adapter(str(root / "resaved"), name, use_safetensors=True)
    assert (root / "resaved" / "adapter.safetensors").read_bytes() == (dst / "adapter.safetensors").read_bytes()


def test_prune_stage_loads_no_backbone():
    """Pruning is tensor work: rule prune's script reaches no module that builds or loads a model."""
    import ast

    from adapter_pruning.codehash import import_closure

    closure = import_closure(Path(__file__).resolve().parents[1] / "scripts" / "prune.py")
    names = {p.stem for p in closure}
    assert "prune" in names and not names & {"models", "evaluation", "training", "results", "data", "evaluate"}
    for path in closure:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module or ""]
            else:
                continue
            assert not {m.split(".")[0] for m in mods} & {"transformers", "adapters"}, (path, mods)


def _old_way(trained, tiny_model_dir, p):
    """Scores and predictions as the removed prune_evaluate computed them: the trained adapter loaded
    into the model, the pruned layers applied in memory (masks.load_into_model), then scored."""
    from adapter_pruning import data, masks, methods, models, results
    from adapter_pruning.stages.evaluate import score_splits
    from adapter_pruning.stages.prune import prune_layers

    root, paths = trained
    model, tok, name = models.load_trained(str(tiny_model_dir), root / "adapter")
    layers = masks.extract_layers(model, name)
    optimized = artifacts.read_optimized(root / "optimized.safetensors", layers)
    inputs = methods.PruneInputs(layers=layers, optimized=optimized, seed=0)
    state, info = prune_layers(inputs, methods.get("tropical"), IDS, p)
    masks.load_into_model(model, state)
    frames = {s: data.read_prepared(f, "trec") for s, f in _splits(paths).items()}
    scores, predictions = score_splits(model, tok, "trec", frames, max_length=32, batch_size=24, device="cpu")
    frame = results.score_frame(
        IDS,
        scores,
        scope="CU",
        method="tropical",
        p=p,
        n_params=info["n_params"],
        n_pruned=info["n_pruned"],
        primary_metric="accuracy",
        provenance={
            **results.runtime_provenance("cpu"),
            **artifacts.read_train_device(root / "adapter"),
            "train_precision": artifacts.read_train_precision(root / "adapter"),
        },
        jaccard_standard=info["jaccard_standard"],
        pruned_outside_standard=info["pruned_outside_standard"],
        slack=info["slack"],
        width=int(layers[0].A.shape[0]),
        lam=0.5,
    )
    pred = results.predictions_frame(IDS, predictions, lam=0.5, scope="CU", method="tropical", p=p)
    sizes = json.loads((root / "sweep" / f"p{p:g}" / "prune.json").read_text())  # file sizes: the saved state's
    frame = frame.with_columns(pl.lit(sizes["dense_bytes"], dtype=pl.Int64).alias("dense_bytes"))
    return frame.with_columns(pl.lit(sizes["compact_bytes"], dtype=pl.Int64).alias("compact_bytes")), pred


def test_evaluate_one_state_per_job_or_all_in_one_writes_the_same_files(trained, pruned, tiny_model_dir):
    root, paths = trained
    ids = {"model": "tiny", "task": "trec", "seed": 0}
    spec = {"model": str(tiny_model_dir), "max_length": 32}
    states = [root / "adapter"] + [root / "sweep" / f"p{p:g}" for p in PS]
    names = ["full"] + [f"p{p:g}" for p in PS]
    for state, name in zip(states, names):
        evaluate_states(
            ids,
            spec,
            [state],
            _splits(paths),
            [root / "ev1" / f"{name}.parquet"],
            [root / "ev1" / f"pred_{name}.parquet"],
            device="cpu",
            batch_size=24,
        )
    evaluate_states(
        ids,
        spec,
        states,
        _splits(paths),
        [root / "evN" / f"{n}.parquet" for n in names],
        [root / "evN" / f"pred_{n}.parquet" for n in names],
        device="cpu",
        batch_size=24,
    )
    for name in names:
        for f in (f"{name}.parquet", f"pred_{name}.parquet"):
            assert pl.read_parquet(root / "ev1" / f).equals(pl.read_parquet(root / "evN" / f)), f
    full = pl.read_parquet(root / "evN" / "full.parquet")
    assert full["method"].unique().to_list() == ["full"] and full["p"].unique().to_list() == [0.0]
    assert full["lam"].null_count() == full["scope"].null_count() == full["jaccard_standard"].null_count() == 4
    assert (full["n_pruned"] == 0).all() and full["device"].unique().to_list() == ["cpu"]
    assert full["dense_bytes"].unique().to_list() == [(root / "adapter" / "adapter.safetensors").stat().st_size]
    assert full["compact_bytes"].null_count() == 4
    # where it was scored and where its adapter was trained, both recorded
    from adapter_pruning.devices import cpu_name

    assert full["device_name"].unique().to_list() == [cpu_name()]
    assert full.select("train_device", "train_device_name").unique().rows() == [("cpu", cpu_name())]
    for p, info in zip(PS, pruned):
        frame = pl.read_parquet(root / "evN" / f"p{p:g}.parquet")
        pred = pl.read_parquet(root / "evN" / f"pred_p{p:g}.parquet")
        assert frame["n_pruned"].unique().to_list() == [info["n_pruned"]]
        assert frame["jaccard_standard"].unique().to_list() == [info["jaccard_standard"]]
        state = root / "sweep" / f"p{p:g}"
        assert frame["dense_bytes"].unique().to_list() == [(state / "adapter.safetensors").stat().st_size]
        assert frame["compact_bytes"].unique().to_list() == [(state / "adapter.compact.safetensors").stat().st_size]
        old_frame, old_pred = _old_way(trained, tiny_model_dir, p)  # results identical to before the split
        assert frame.equals(old_frame) and pred.equals(old_pred)
        scores = frame.filter(pl.col("metric") == "accuracy")
        for split, path in _splits(paths).items():  # the predictions are the scored ones, in the data's order
            got = pred.filter(pl.col("split") == split)
            assert got["id"].to_list() == pl.read_parquet(path)["id"].to_list()
            assert got["lam"].unique().to_list() == [0.5] and got["p"].unique().to_list() == [p]
            acc = float((got["prediction"] == got["label"]).mean())
            assert scores.filter(pl.col("split") == split)["score"].item() == pytest.approx(acc, abs=1e-12)


def test_evaluate_tokenizes_each_split_once_per_job(trained, pruned, tiny_model_dir, monkeypatch):
    """A job scoring several states tokenizes validation and test once, not once per state."""
    from adapter_pruning import evaluation

    root, paths = trained
    calls = []
    real_encode = evaluation.encode
    monkeypatch.setattr(evaluation, "encode", lambda tok, df, ml: calls.append(df.height) or real_encode(tok, df, ml))
    states = [root / "adapter"] + [root / "sweep" / f"p{p:g}" for p in PS]
    evaluate_states(
        {"model": "tiny", "task": "trec", "seed": 0},
        {"model": str(tiny_model_dir), "max_length": 32},
        states,
        _splits(paths),
        [root / "enc" / f"{k}.parquet" for k in range(len(states))],
        [root / "enc" / f"pred_{k}.parquet" for k in range(len(states))],
        device="cpu",
        batch_size=24,
    )
    assert len(states) > 2 and calls == [24, 24]  # validation and test, 24 rows each
    # (That the scores equal those of tokenizing per state: the test above, against _old_way.)


def test_evaluate_refuses_states_with_another_head(trained, pruned, tiny_model_dir):
    import shutil

    root, paths = trained
    other = root / "other_head"
    shutil.copytree(root / "sweep" / "p50", other)
    head = other / "model_head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0x01
    head.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model_head.safetensors differs"):
        evaluate_states(
            {"model": "tiny", "task": "trec", "seed": 0},
            {"model": str(tiny_model_dir), "max_length": 32},
            [root / "adapter", other],
            _splits(paths),
            [root / "x1.parquet", root / "x2.parquet"],
            [root / "y1.parquet", root / "y2.parquet"],
            device="cpu",
        )
    assert not (root / "x2.parquet").exists()


def test_calibration_norms_and_the_baseline_states(trained, tiny_model_dir):
    """input_rms equals the RMS of the adapter inputs captured by hand (non-padding tokens only), the
    up input is ReLU of the down layer, and random / activation states are count-matched to Tropical."""
    import numpy as np
    import torch

    from adapter_pruning import evaluation, masks, models
    from adapter_pruning.stages.calibrate import calibrate, input_rms

    root, paths = trained
    model, tok, name = models.load_trained(str(tiny_model_dir), root / "adapter")
    df = pl.read_parquet(paths["train"]).head(10)
    got, n_tokens = input_rms(model, tok, name, df, max_length=32, batch_size=4, device="cpu")
    # by hand: one padded batch of all 10 rows, full input tensors captured, padding removed
    layer = masks.extract_layers(model, name)[0]
    seen = {}
    down = model.get_submodule(f"{layer.prefix}.adapter_down.0")
    h = down.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    enc = evaluation.encode(tok, df, 32)
    batch = evaluation.collate(enc, np.arange(10), tok.pad_token_id)
    with torch.no_grad():
        model(**batch)
    h.remove()
    keep = batch["attention_mask"].bool()
    x = seen["x"][keep].double()  # (tokens, d)
    assert n_tokens == int(keep.sum())
    down_in, up_in = got[layer.prefix]
    assert torch.allclose(down_in, x.pow(2).mean(0).sqrt(), rtol=1e-5)
    z = torch.relu(x @ down.weight.double().T + down.bias.double())
    assert torch.allclose(up_in, z.pow(2).mean(0).sqrt(), rtol=1e-5, atol=1e-7)

    calibrate(
        {"model": "tiny", "task": "trec", "seed": 0},
        {"model": str(tiny_model_dir), "max_length": 32, "examples": 16},
        root / "adapter",
        paths["train"],
        {"input_rms": root / "calibration.safetensors"},
        device="cpu",
        batch_size=8,
    )
    from adapter_pruning.devices import cpu_name

    info = artifacts.read_calibration_info(root / "calibration.safetensors")  # counts and where it ran
    assert info["n_examples"] == 16 and info["n_tokens"] > 16
    assert (info["device"], info["device_name"], info["precision"]) == ("cpu", cpu_name(), "fp32")
    counts = {}
    for method in ("tropical", "random", "activation"):
        ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CN", "method": method}
        (info,) = prune_states(
            ids,
            [90.0],
            root / "adapter",
            root / "optimized.safetensors",
            [root / method],
            calibration={"input_rms": root / "calibration.safetensors"},
        )
        counts[method] = [rec["n_pruned"] for rec in info["layers"]]
        evaluate_states(
            {"model": "tiny", "task": "trec", "seed": 0},
            {"model": str(tiny_model_dir), "max_length": 32},
            [root / method],
            {"validation": paths["validation"], "test": paths["test"]},
            [root / f"{method}.parquet"],
            [root / f"{method}_pred.parquet"],
            device="cpu",
            batch_size=24,
        )
        assert pl.read_parquet(root / f"{method}.parquet")["method"].unique().to_list() == [method]
    assert counts["random"] == counts["activation"] == counts["tropical"]
    with pytest.raises(ValueError, match="need input_rms"):
        ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CU", "method": "activation"}
        prune_states(ids, [90.0], root / "adapter", root / "optimized.safetensors", [root / "x"])


def test_training_threads_come_from_the_config_not_the_cores(tiny_model_dir, trained, caplog):
    """stages.train: the job trains on spec["threads"] (training.threads) even when Snakemake gave it
    fewer cores (--cores 1), and says so: the thread count defines the weights, the cores only speed."""
    from adapter_pruning.stages import train as train_stage

    root, paths = trained
    before = torch.get_num_threads()
    spec = {"model": str(tiny_model_dir), "seed": 0, "max_length": 32, "steps": 2, "batch_size": 8, "lr": 1e-3}
    spec |= {"eval_every": 2, "reduction_factor": 16, "non_linearity": "relu", "threads": 2}
    try:
        with caplog.at_level("WARNING", logger="adapter_pruning"):
            train_stage.train_adapter(
                "trec", spec, paths["train"], paths["validation"], root / "threads", device="cpu", cores=1
            )
    finally:
        torch.set_num_threads(before)
    assert "training.threads = 2 but this job was given 1 core(s)" in caplog.text
    assert json.loads((root / "threads" / "metrics.json").read_text())["threads"] == 2


def test_calibration_statistics_in_one_pass_equal_hand_computations(trained, tiny_model_dir):
    """One pass collects the input RMS (bit for bit as an RMS-only pass), the second moments X̃ᵀX̃/N of
    both maps' inputs (with the constant 1 of the bias) and the gradient of the mean cross-entropy with
    respect to A, B and the up bias, each equal to a computation by hand on one full batch."""
    import numpy as np

    from adapter_pruning import evaluation, masks, models
    from adapter_pruning.stages.calibrate import calibration_statistics, input_rms

    root, paths = trained
    model, tok, name = models.load_trained(str(tiny_model_dir), root / "adapter")
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    df = pl.read_parquet(paths["train"]).head(10)
    stats, n_tokens = calibration_statistics(
        model,
        tok,
        name,
        df,
        statistics=["gradients", "second_moments", "input_rms"],
        max_length=32,
        batch_size=4,
        device="cpu",
    )
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags  # left as it was
    rms_only, n_tokens2 = input_rms(model, tok, name, df, max_length=32, batch_size=4, device="cpu")
    assert n_tokens == n_tokens2
    for prefix, (down_in, up_in) in rms_only.items():
        assert torch.equal(stats["input_rms"][prefix][0], down_in) and torch.equal(stats["input_rms"][prefix][1], up_in)

    # by hand: one padded batch of all 10 rows, the adapter inputs captured, padding removed
    layers = masks.extract_layers(model, name)
    seen = {}
    hooks = []
    for layer in layers:
        for part in ("adapter_down.0", "adapter_up"):
            key = (layer.prefix, part)
            hooks.append(
                model.get_submodule(f"{layer.prefix}.{part}").register_forward_pre_hook(
                    lambda m, a, key=key: seen.__setitem__(key, a[0].detach().clone())
                )
            )
    params = {
        layer.prefix: [
            model.get_submodule(f"{layer.prefix}.adapter_down.0").weight,
            model.get_submodule(f"{layer.prefix}.adapter_down.0").bias,
            model.get_submodule(f"{layer.prefix}.adapter_up").weight,
            model.get_submodule(f"{layer.prefix}.adapter_up").bias,
        ]
        for layer in layers
    }
    for p in model.parameters():
        p.requires_grad_(False)
    leaves = [p for ps in params.values() for p in ps]
    for p in leaves:
        p.requires_grad_(True)
    batch = evaluation.collate(evaluation.encode(tok, df, 32), np.arange(10), tok.pad_token_id)
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor(df["label"].to_list()))
    grads = torch.autograd.grad(loss, leaves)
    for h in hooks:
        h.remove()
    keep = batch["attention_mask"].bool()
    k, nonzero_A = 0, False
    for layer in layers:
        for slot, part in enumerate(("adapter_down.0", "adapter_up")):
            x = seen[(layer.prefix, part)][keep].double()
            xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
            H = stats["second_moments"][layer.prefix][slot]
            assert torch.allclose(H, xt.T @ xt / x.shape[0], rtol=1e-5, atol=1e-6)  # float32 forwards, other batches
            assert torch.allclose(H.diagonal()[:-1].sqrt(), stats["input_rms"][layer.prefix][slot], rtol=1e-12)
            assert H[-1, -1] == 1.0
        gW_d, gb_d, gW_u, gb_u = grads[k : k + 4]
        k += 4
        gA, gB, gub = stats["gradients"][layer.prefix]
        assert torch.allclose(gA, torch.cat([gW_d, gb_d[:, None]], 1).double(), rtol=1e-4, atol=1e-7)
        assert torch.allclose(gB, gW_u.double(), rtol=1e-4, atol=1e-7)
        assert torch.allclose(gub, gb_u.double(), rtol=1e-4, atol=1e-7)
        assert gub.abs().sum() > 0  # the loss depends on every layer's output
        nonzero_A = nonzero_A or bool(gA.abs().sum() > 0)
    assert nonzero_A  # (a tiny adapter after 4 steps can have a layer whose ReLU units are all off)


def test_calibrate_writes_each_statistic_and_the_data_methods_prune_from_them(trained, tiny_model_dir):
    from adapter_pruning import methods
    from adapter_pruning.stages.calibrate import calibrate

    root, paths = trained
    out = {s: root / "cal" / f"{s}.safetensors" for s in methods.CALIBRATION}
    calibrate(
        {"model": "tiny", "task": "trec", "seed": 0},
        {"model": str(tiny_model_dir), "max_length": 32, "examples": 16},
        root / "adapter",
        paths["train"],
        out,
        device="cpu",
        batch_size=8,
    )
    layers = artifacts.read_adapter_layers(root / "adapter")
    for statistic, path in out.items():
        got = artifacts.read_calibration(statistic, path, layers)
        assert len(got) == len(layers)
    with pytest.raises(artifacts.CorruptFileError, match="no calibration gradients"):
        artifacts.read_gradients(out["second_moments"], layers)
    ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CU"}
    names = ["tropical", "taylor", "sparsegpt", "activation", "tropical_opt", "tropical_pt", "standard_ps"]
    dirs = [root / "data_methods" / m for m in names]
    infos = prune_sweep(ids, names, [80.0], root / "adapter", root / "optimized.safetensors", dirs, calibration=out)
    by = {i["method"]: i for i in infos}
    for m in ("taylor", "sparsegpt", "activation", "tropical_opt"):
        assert [la["n_pruned"] for la in by[m]["layers"]] == [la["n_pruned"] for la in by["tropical"]["layers"]]
    assert by["tropical_pt"]["n_pruned"] == by["standard_ps"]["n_pruned"] >= by["tropical"]["n_pruned"]
    assert by["tropical_opt"]["slack"] == by["tropical"]["slack"] and by["standard_ps"]["slack"] == 0
    # standard_ps reads nothing but the adapter
    (info,) = prune_states({**ids, "method": "standard_ps"}, [80.0], root / "adapter", None, [root / "ps_only"])
    assert info["n_pruned"] == by["standard_ps"]["n_pruned"]
    with pytest.raises(ValueError, match="need optimized"):
        prune_states({**ids, "method": "tropical_pt"}, [80.0], root / "adapter", None, [root / "x_pt"])


def test_dense_small_adapter_is_trained_and_scored_at_its_retained_share(trained, tiny_model_dir):
    """train_dense_small trains width 1 (reduction factor 32 on d = 32) with the training settings; the
    evaluation counts it against the full width-2 adapter."""
    from adapter_pruning.stages.dense_small import adapter_parameter_count, train_dense_small

    root, paths = trained
    ids = {"model": "tiny", "task": "trec", "seed": 0}
    spec = {"model": str(tiny_model_dir), "seed": 0, "max_length": 32, "steps": 2, "batch_size": 8, "lr": 1e-3}
    spec |= {"eval_every": 2, "reduction_factor": 16, "non_linearity": "relu", "threads": 1}
    info = train_dense_small(ids, {**spec, "width": 1}, paths["train"], paths["validation"], root / "r1", device="cpu")
    assert adapter_parameter_count(384, 24, 1) == 18_840 and adapter_parameter_count(384, 1, 1) == 1_153
    assert info["n_params"] == 2 * (1 * 65 + 32) and info["n_params_full"] == 2 * (2 * 65 + 32)
    assert info["width"] == 1 and info["width_full"] == 2 and info["reduction_factor"] == 32
    assert info["retained"] == pytest.approx(194 / 324) and info["p"] == pytest.approx(100 * 130 / 324)
    assert {la.A.shape[0] for la in artifacts.read_adapter_layers(root / "r1")} == {1}
    assert json.loads((root / "r1" / "metrics.json").read_text())["config"]["reduction_factor"] == 32
    evaluate_states(
        ids,
        {"model": str(tiny_model_dir), "max_length": 32},
        [root / "r1"],
        _splits(paths),
        [root / "r1.parquet"],
        [root / "r1_pred.parquet"],
        device="cpu",
        batch_size=24,
    )
    rows = pl.read_parquet(root / "r1.parquet")
    assert rows["method"].unique().to_list() == ["dense_small"] and rows["width"].unique().to_list() == [1]
    assert rows["n_params"].unique().to_list() == [324] and rows["n_pruned"].unique().to_list() == [130]
    assert rows["retained"][0] == pytest.approx(194 / 324) and rows["p"][0] == info["p"]
    assert rows["scope"].is_null().all() and rows["lam"].is_null().all() and rows["slack"].is_null().all()
    for width, match in (
        (3, "width 3 does not divide the model's hidden size 32"),
        (2, "not below the full adapter's width 2"),
    ):
        with pytest.raises(ValueError, match=match):
            train_dense_small(
                ids, {**spec, "width": width}, paths["train"], paths["validation"], root / "x", device="cpu"
            )
    assert not (root / "x").exists()
