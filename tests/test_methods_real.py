"""The data-driven methods on the real packaged MiniLM and real Rotten Tomatoes data: the calibration
statistics of one pass (consistent with each other, the gradient against a finite difference of the
loss), and taylor / sparsegpt states count-matched to Tropical, sparsegpt's update lowering every
map's reconstruction error on the calibration inputs, all states scored."""

from __future__ import annotations

import pytest
import torch

from adapter_pruning import artifacts, methods

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibrated(real_rt_adapter, tmp_path_factory):
    from adapter_pruning.data import write_prepared
    from adapter_pruning.stages.calibrate import calibrate

    adapter_dir, train, _, _ = real_rt_adapter
    root = tmp_path_factory.mktemp("real-calibration")
    write_prepared(train, root / "train.parquet", "rotten_tomatoes")
    out = {s: root / f"{s}.safetensors" for s in methods.CALIBRATION}
    calibrate(
        {"model": "minilm", "task": "rotten_tomatoes", "seed": 0},
        {"model": "minilm", "max_length": 40, "examples": 32},
        adapter_dir,
        root / "train.parquet",
        out,
        device="cpu",
        batch_size=16,
    )
    layers = artifacts.read_adapter_layers(adapter_dir)
    stats = {s: artifacts.read_calibration(s, path, layers) for s, path in out.items()}
    return adapter_dir, train, root, layers, stats


def test_statistics_are_consistent(calibrated):
    _, _, _, layers, stats = calibrated
    assert len(layers) == 6
    for (down_in, up_in), (H_down, H_up) in zip(stats["input_rms"], stats["second_moments"]):
        assert H_down.shape == (385, 385) and H_up.shape == (25, 25)
        for H, rms in ((H_down, down_in), (H_up, up_in)):
            assert torch.equal(H, H.T) and H[-1, -1] == 1.0
            assert torch.linalg.eigvalsh(H).min() > -1e-9 * H.diagonal().max()
            assert torch.allclose(H.diagonal()[:-1].sqrt(), rms, rtol=1e-12)
        assert (H_up[:-1, :-1] >= 0).all()  # ReLU outputs: nonnegative products


def test_gradient_matches_a_finite_difference_of_the_mean_loss(calibrated):
    """g · v = (L(w + εv) − L(w − εv)) / 2ε along v = g / ‖g‖ over every adapter parameter, with L
    the mean cross-entropy over the 32 calibration examples (the sample rule calibrate draws)."""
    import numpy as np

    from adapter_pruning import evaluation, masks, models
    from adapter_pruning.stages.calibrate import calibration_sample

    adapter_dir, train, _, layers, stats = calibrated
    model, tok, name = models.load_trained("minilm", adapter_dir)
    df = calibration_sample(train, 32, 0)
    enc = evaluation.encode(tok, df, 40)
    batch = evaluation.collate(enc, np.arange(df.height), tok.pad_token_id)
    target = torch.tensor(df["label"].to_list())

    def loss_at(shift: float) -> float:
        moved = [
            masks.AdapterLayer(
                la.prefix, la.A + shift * gA.float(), la.B + shift * gB.float(), la.up_bias + shift * gb.float()
            )
            for la, (gA, gB, gb) in zip(layers, unit)
        ]
        masks.load_into_model(model, moved)
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(**batch).logits.double(), target))

    norm = torch.sqrt(sum((t.double() ** 2).sum() for g in stats["gradients"] for t in g))
    unit = [tuple(t / norm for t in g) for g in stats["gradients"]]
    eps = 1e-2
    fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert float(norm) > 0 and fd == pytest.approx(float(norm), rel=0.05)


def test_taylor_and_sparsegpt_states_on_the_real_adapter(calibrated, real_rt_adapter):
    from adapter_pruning import config
    from adapter_pruning.stages.evaluate import evaluate_states
    from adapter_pruning.stages.prune import prune_sweep
    from adapter_pruning.stages.solve import tropical_solve

    adapter_dir, _, root, layers, stats = calibrated
    spec = config.fill_tropical_defaults({"tropical": {}})["tropical"]
    tropical_solve(spec, adapter_dir, root / "opt.safetensors", root / "trace.parquet", root / "solve.json")
    names = ["tropical", "standard", "taylor", "sparsegpt"]
    out = [root / "pruned" / m for m in names]
    calibration = {s: root / f"{s}.safetensors" for s in methods.CALIBRATION}
    ids = {"model": "minilm", "task": "rotten_tomatoes", "seed": 0, "lam": 0.5, "scope": "CU"}
    swept = prune_sweep(ids, names, [90.0], adapter_dir, root / "opt.safetensors", out, calibration=calibration)
    infos = {i["method"]: i for i in swept}
    k_T = [la["n_pruned"] for la in infos["tropical"]["layers"]]
    for m in ("standard", "taylor", "sparsegpt"):
        assert [la["n_pruned"] for la in infos[m]["layers"]] == k_T, m
    for m in ("taylor", "sparsegpt"):  # free to prune any kept weight of the layer (CU)
        assert infos[m]["slack"] == sum(min(k, la["n_params"] - k) for la, k in zip(infos[m]["layers"], k_T))
    assert infos["standard"]["slack"] == 0
    assert 0 < infos["tropical"]["slack"] < infos["taylor"]["slack"]
    assert infos["taylor"]["jaccard_standard"] < 1 and infos["sparsegpt"]["jaccard_standard"] < 1
    # sparsegpt's survivors lower each map's reconstruction error (w' − w)ᵀ H (w' − w) on the calibration inputs
    new = artifacts.read_adapter_layers(root / "pruned" / "sparsegpt")
    for la, nl, (H_down, H_up) in zip(layers, new, stats["second_moments"]):
        for W0, W1, H in (
            (la.A, nl.A, H_down),
            (torch.cat([la.B, la.up_bias[:, None]], 1), torch.cat([nl.B, nl.up_bias[:, None]], 1), H_up),
        ):
            W0, W1 = W0.double(), W1.double()
            plain = torch.where(W1 == 0, torch.zeros_like(W0), W0)  # the same zeros, original survivors
            err_obs = torch.einsum("ij,jk,ik->", W1 - W0, H, W1 - W0)
            err_plain = torch.einsum("ij,jk,ik->", plain - W0, H, plain - W0)
            assert err_obs < err_plain
    from adapter_pruning.data import write_prepared

    splits = {"validation": root / "val.parquet", "test": root / "val.parquet"}
    write_prepared(real_rt_adapter[2].head(64), splits["validation"], "rotten_tomatoes")
    evaluate_states(
        {"model": "minilm", "task": "rotten_tomatoes", "seed": 0},
        {"model": "minilm", "max_length": 40},
        out,
        splits,
        [root / f"{m}.parquet" for m in names],
        [root / f"{m}_pred.parquet" for m in names],
        device="cpu",
    )
    import polars as pl

    for m in names:
        df = pl.read_parquet(root / f"{m}.parquet")
        assert df["method"].unique().to_list() == [m] and df["score"].is_between(0, 1).all()
        assert df["slack"].unique().to_list() == [infos[m]["slack"]]
