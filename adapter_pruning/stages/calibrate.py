"""Stage of rule ``calibrate``: the calibration statistics of every adapter layer on seeded training
examples, for the methods that need data (:mod:`adapter_pruning.methods`): the input RMS
(``activation``), the second moments ``X̃ᵀX̃ / N`` of each linear map's inputs (``sparsegpt``), the
gradient of the mean task loss (``taylor``) and the mean activation of each bottleneck unit
(``activation`` under the unit scope). All that are asked for come from one pass over the
examples (forward hooks on ``adapter_down`` and ``adapter_up``, plus a backward pass when gradients
are asked for), on the trained, unpruned adapter in eval mode."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from ..models import set_threads

log = logging.getLogger("adapter_pruning")

#: The statistics this stage computes (``adapter_pruning.methods.CALIBRATION``), one file each.
STATISTICS = ("input_rms", "second_moments", "gradients", "activation_mean")


def calibration_statistics(
    model,
    tokenizer,
    name: str,
    df,
    *,
    statistics: Iterable[str],
    max_length: int,
    batch_size: int,
    device,
    precision: str = "fp32",
) -> tuple[dict, int]:
    """One pass of ``model`` (adapter ``name`` and its head active) over the examples of ``df``, in
    batches of ``batch_size`` in row order, collecting the ``statistics`` asked for (float64, CPU):

    * ``input_rms``: per layer ``prefix -> (down_in (d,), up_in (r,))``, the root mean square over every
      non-padding token of each feature entering ``adapter_down`` (the hidden states) and
      ``adapter_up`` (the ReLU bottleneck activations);
    * ``second_moments``: per layer ``prefix -> (H_down (d+1, d+1), H_up (r+1, r+1))``,
      ``H = X̃ᵀX̃ / N`` over the same tokens with ``X̃ = [X, 1]`` (the constant input of the map's bias
      as last feature);
    * ``gradients``: per layer ``prefix -> (g_A (r, d+1), g_B (d, r), g_up_bias (d,))``, the gradient of
      the mean cross-entropy of the examples (labels: ``df["label"]``) with respect to the down weight
      and bias, the up weight and the up bias (backbone and head frozen, eval mode: no dropout);
    * ``activation_mean``: per layer ``prefix -> (r,)``, the mean over the same tokens of each feature
      entering ``adapter_up``: each bottleneck unit's ReLU activation ``ReLU(a_j · x̃)``.

    The forward passes run in ``precision`` (:func:`adapter_pruning.precision.autocast`), the backward
    passes outside autocast with its float32 matmul setting (``precision.float32_matmul``); the sums
    are float64. Returns ``({statistic: {prefix: tensors}}, number of non-padding tokens)``. Without
    gradients the pass runs under ``torch.inference_mode``; the forward values are the same either way.
    """
    import numpy as np
    import torch

    from .. import evaluation, masks
    from ..precision import autocast, float32_matmul

    asked = set(statistics)
    if asked - set(STATISTICS):
        raise ValueError(
            f"unknown calibration statistics {sorted(asked - set(STATISTICS))} (known: {', '.join(STATISTICS)})"
        )
    statistics = [s for s in STATISTICS if s in asked]
    if not statistics:
        raise ValueError(f"no calibration statistic asked for (known: {', '.join(STATISTICS)})")
    want_rms, want_H, want_g, want_mean = (s in statistics for s in STATISTICS)
    layers = masks.extract_layers(model, name)
    rms: dict[str, list] = {}
    moments: dict[str, list] = {}
    means: dict[str, torch.Tensor] = {}
    keep = {}  # the current batch's non-padding positions, (batch, seq) bool
    hooks = []

    def hook(key, slot):
        def fn(module, args):
            x = args[0]
            x = x[keep["mask"]] if x.dim() == 3 else x.reshape(-1, x.shape[-1])
            x = x.detach().double()
            if want_rms:
                rms[key][slot] += x.pow(2).sum(0).cpu()
            if want_H:
                xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)
                moments[key][slot] += (xt.T @ xt).cpu()
            if want_mean and slot == 1:
                means[key] += x.sum(0).cpu()

        return fn

    params = {}
    for layer in layers:
        r, d1 = layer.A.shape
        rms[layer.prefix] = [torch.zeros(d1 - 1, dtype=torch.float64), torch.zeros(r, dtype=torch.float64)]
        means[layer.prefix] = torch.zeros(r, dtype=torch.float64)
        moments[layer.prefix] = [
            torch.zeros(d1, d1, dtype=torch.float64),
            torch.zeros(r + 1, r + 1, dtype=torch.float64),
        ]
        down = model.get_submodule(f"{layer.prefix}.adapter_down.0")
        up = model.get_submodule(f"{layer.prefix}.adapter_up")
        params[layer.prefix] = (down.weight, down.bias, up.weight, up.bias)
        hooks.append(down.register_forward_pre_hook(hook(layer.prefix, 0)))
        hooks.append(up.register_forward_pre_hook(hook(layer.prefix, 1)))
    grads = {prefix: [torch.zeros(p.shape, dtype=torch.float64) for p in ps] for prefix, ps in params.items()}
    enc = evaluation.encode(tokenizer, df, max_length)
    labels = df["label"].to_numpy()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_tokens = 0
    flags = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    try:
        if want_g:
            for p in model.parameters():
                p.requires_grad_(False)
            for ps in params.values():
                for p in ps:
                    p.requires_grad_(True)
                    p.grad = None
        for start in range(0, df.height, batch_size):
            rows = np.arange(start, min(start + batch_size, df.height))
            batch = evaluation.collate(enc, rows, pad_id, padding_side=tokenizer.padding_side)
            keep["mask"] = batch["attention_mask"].bool().to(device)
            n_tokens += int(batch["attention_mask"].sum())
            inputs = {k: v.to(device) for k, v in batch.items()}
            if want_g:
                with autocast(precision, device):
                    logits = model(**inputs).logits
                target = torch.as_tensor(labels[rows], device=logits.device)
                with float32_matmul(precision):
                    torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum").backward()
                for prefix, ps in params.items():
                    for acc, p in zip(grads[prefix], ps):
                        acc += p.grad.detach().double().cpu()
                        p.grad = None
            else:
                with torch.inference_mode(), autocast(precision, device):
                    model(**inputs)
    finally:
        for h in hooks:
            h.remove()
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
    out: dict[str, dict] = {}
    if want_rms:
        out["input_rms"] = {
            prefix: (torch.sqrt(s[0] / n_tokens), torch.sqrt(s[1] / n_tokens)) for prefix, s in rms.items()
        }
    if want_H:
        out["second_moments"] = {prefix: (m[0] / n_tokens, m[1] / n_tokens) for prefix, m in moments.items()}
    if want_g:
        n = df.height
        out["gradients"] = {
            prefix: (torch.cat([g[0], g[1][:, None]], 1) / n, g[2] / n, g[3] / n) for prefix, g in grads.items()
        }
    if want_mean:
        out["activation_mean"] = {prefix: s / n_tokens for prefix, s in means.items()}
    return out, n_tokens


def input_rms(model, tokenizer, name: str, df, *, max_length: int, batch_size: int, device) -> tuple[dict, int]:
    """Per adapter layer ``prefix -> (down_in (d,), up_in (r,))`` (:func:`calibration_statistics`'s
    ``input_rms``) and the number of tokens."""
    stats, n_tokens = calibration_statistics(
        model,
        tokenizer,
        name,
        df,
        statistics=["input_rms"],
        max_length=max_length,
        batch_size=batch_size,
        device=device,
    )
    return stats["input_rms"], n_tokens


def calibration_sample(df, examples: int, seed: int):
    """The calibration examples: ``min(examples, rows)`` rows of the prepared training frame ``df``,
    sampled (and shuffled) with ``seed``; all rows, in their order, when there are no more."""
    n = min(int(examples), df.height)
    return df.sample(n=n, seed=int(seed), shuffle=True) if n < df.height else df


def calibrate(
    ids: Mapping,
    spec: Mapping,
    adapter_dir,
    train_path,
    out_paths: Mapping,
    *,
    device: str = "auto",
    batch_size: int = 128,
    threads: int | None = None,
) -> None:
    """Collect the statistics named by ``out_paths`` (``{statistic: path}``, keys of
    :data:`STATISTICS`) on ``spec['examples']`` training examples (a seeded sample, seed = the run's
    seed; :func:`calibration_sample`) in one pass, forward passes in ``spec['precision']``
    (``evaluation.precision``; fp32 when absent), and save each (:mod:`adapter_pruning.artifacts`) with
    the device and precision it was computed in. ``device``: as :func:`adapter_pruning.devices.resolve`
    (the workflow passes its planned ``cpu`` or ``cuda``)."""
    from .. import artifacts, data, devices, models, precision

    writers = {
        "input_rms": artifacts.write_input_rms,
        "second_moments": artifacts.write_second_moments,
        "gradients": artifacts.write_gradients,
        "activation_mean": artifacts.write_activation_mean,
    }
    unknown = sorted(set(out_paths) - set(writers))
    if unknown:
        raise ValueError(f"unknown calibration statistics {unknown} (known: {', '.join(STATISTICS)})")
    set_threads(threads)
    dev = models.resolve_device(device)
    prec = precision.check_precision(spec.get("precision", "fp32"), dev, what="evaluation.precision")
    provenance = {**devices.describe(dev), "precision": prec}  # recorded in each file (its metadata)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    df = calibration_sample(data.read_prepared(train_path, ids["task"]), spec["examples"], ids["seed"])
    stats, n_tokens = calibration_statistics(
        model,
        tokenizer,
        name,
        df,
        statistics=list(out_paths),
        max_length=spec["max_length"],
        batch_size=batch_size,
        device=dev,
        precision=prec,
    )
    log.info(
        "%s seed %s: %s of %d layers from %d examples (%d tokens, %s)",
        ids["task"],
        ids["seed"],
        ", ".join(stats),
        len(next(iter(stats.values()))),
        df.height,
        n_tokens,
        prec,
    )
    for statistic, path in out_paths.items():
        writers[statistic](path, stats[statistic], n_examples=df.height, n_tokens=n_tokens, provenance=provenance)
