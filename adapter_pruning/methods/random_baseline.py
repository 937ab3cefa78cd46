"""``random``: i.i.d. uniform scores, count-matched to Tropical (a floor any informed ranking should beat);
under the unit scope, i.i.d. uniform scores per unit."""

from __future__ import annotations

from . import MaskMethod, PruneInputs


def random_scores(layers, seed: int) -> list:
    """I.i.d. uniform scores in ``[0, 1)`` per parameter (float64, a CPU generator seeded with ``seed``,
    drawn layer by layer in the flat order ``A``, ``B``, ``up_bias``), on each layer's device. The
    ``k_T`` lowest of a group are pruned, so the masks are nested in ``p``."""
    import torch

    from ..masks import _unflat

    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for layer in layers:
        flat = torch.rand(layer.n_params, generator=gen, dtype=torch.float64).to(layer.A.device)
        m = _unflat(layer.prefix, flat, layer)
        out.append((m.A, m.B, m.up_bias))
    return out


def random_unit_scores(layers, seed: int) -> list:
    """I.i.d. uniform scores in ``[0, 1)`` per unit (float64 ``(r,)`` per layer, a CPU generator seeded
    with ``seed``, drawn layer by layer), on each layer's device. The lowest are removed, so the unit
    masks are nested in ``p``."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    return [torch.rand(layer.A.shape[0], generator=gen, dtype=torch.float64).to(layer.A.device) for layer in layers]


def _scores(inputs: PruneInputs) -> list:
    return random_scores(inputs.layers, inputs.seed)


def _unit_scores(inputs: PruneInputs) -> list:
    return random_unit_scores(inputs.layers, inputs.seed)


RANDOM = MaskMethod(
    name="random",
    summary="i.i.d. uniform scores seeded with the run's seed; count-matched to Tropical",
    count="tropical",
    scores=_scores,
    unit_scores=_unit_scores,
)
METHODS = (RANDOM,)
