"""Stage of rule ``calibrate``: the input norms of every adapter layer on calibration examples, for
the ``activation`` baseline (Wanda-style scores, :func:`adapter_pruning.masks.activation_scores`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..models import set_threads

log = logging.getLogger("adapter_pruning")


def input_rms(
    model, tokenizer, name: str, df, *, max_length: int, batch_size: int, device, precision: str = "fp32"
) -> tuple[dict, int]:
    """Per adapter layer ``prefix -> (down_in (d,), up_in (r,))``: the root mean square, over every
    non-padding token of ``df``, of each feature entering ``adapter_down`` (the hidden states) and
    ``adapter_up`` (the ReLU bottleneck activations); and the number of tokens. float64, CPU. The
    forward passes run in ``precision`` (:mod:`adapter_pruning.precision`); the sums are float64."""
    import numpy as np
    import torch

    from .. import evaluation, masks
    from ..precision import autocast

    layers = masks.extract_layers(model, name)
    sums: dict[str, list] = {}
    keep = {}  # the current batch's non-padding positions, (batch, seq) bool
    hooks = []

    def hook(key, slot):
        def fn(module, args):
            x = args[0]
            x = x[keep["mask"]] if x.dim() == 3 else x.reshape(-1, x.shape[-1])
            sums[key][slot] += x.detach().double().pow(2).sum(0).cpu()

        return fn

    for layer in layers:
        r, d1 = layer.A.shape
        sums[layer.prefix] = [torch.zeros(d1 - 1, dtype=torch.float64), torch.zeros(r, dtype=torch.float64)]
        hooks.append(
            model.get_submodule(f"{layer.prefix}.adapter_down.0").register_forward_pre_hook(hook(layer.prefix, 0))
        )
        hooks.append(model.get_submodule(f"{layer.prefix}.adapter_up").register_forward_pre_hook(hook(layer.prefix, 1)))
    enc = evaluation.encode(tokenizer, df, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_tokens = 0
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision, device):
            for start in range(0, df.height, batch_size):
                batch = evaluation.collate(
                    enc,
                    np.arange(start, min(start + batch_size, df.height)),
                    pad_id,
                    padding_side=tokenizer.padding_side,
                )
                keep["mask"] = batch["attention_mask"].bool().to(device)
                n_tokens += int(batch["attention_mask"].sum())
                model(**{k: v.to(device) for k, v in batch.items()})
    finally:
        for h in hooks:
            h.remove()
    return {prefix: (torch.sqrt(s[0] / n_tokens), torch.sqrt(s[1] / n_tokens)) for prefix, s in sums.items()}, n_tokens


def calibrate(
    ids: Mapping,
    spec: Mapping,
    adapter_dir,
    train_path,
    out_path,
    *,
    device: str = "auto",
    batch_size: int = 128,
    threads: int | None = None,
) -> None:
    """Collect the input norms on ``spec['examples']`` training examples (a seeded sample, seed =
    the run's seed), forward passes in ``spec['precision']`` (``evaluation.precision``; fp32 when
    absent), and save them with the device and precision they were computed in
    (:func:`adapter_pruning.artifacts.write_input_rms`). ``device``: as
    :func:`adapter_pruning.devices.resolve` (the workflow passes its planned ``cpu`` or ``cuda``)."""
    from .. import artifacts, data, devices, models, precision

    set_threads(threads)
    dev = models.resolve_device(device)
    prec = precision.check_precision(spec.get("precision", "fp32"), dev, what="evaluation.precision")
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    df = data.read_prepared(train_path, ids["task"])
    n = min(int(spec["examples"]), df.height)
    df = df.sample(n=n, seed=int(ids["seed"]), shuffle=True) if n < df.height else df
    norms, n_tokens = input_rms(
        model, tokenizer, name, df, max_length=spec["max_length"], batch_size=batch_size, device=dev, precision=prec
    )
    log.info(
        "%s seed %s: input norms of %d layers from %d examples (%d tokens)",
        ids["task"],
        ids["seed"],
        len(norms),
        n,
        n_tokens,
    )
    provenance = {**devices.describe(dev), "precision": prec}
    artifacts.write_input_rms(out_path, norms, n_examples=n, n_tokens=n_tokens, provenance=provenance)
