"""Adapter-layer extraction, Standard / Tropical pruning masks per scope, and applying them.

Functional API in the spirit of ``torch.nn.utils.prune``; notation as ``docs/METHOD.md``.

Parameters of one adapter layer (a sequential bottleneck ``h <- h + f(h W_d) W_u``):

* ``A`` ``(r, d+1)``: down weight ``adapter_down.0.weight`` ``(r, d)`` with the down bias
  ``adapter_down.0.bias`` ``(r,)`` as last column;
* ``B`` ``(d, r)``: up weight ``adapter_up.weight``;
* ``up_bias`` ``(d,)``: ``adapter_up.bias`` (not in the tropical objective).

Masks (``True`` = pruned, set to zero). For a pruning percentage ``p`` and one *scope group* of
``n`` parameters, ``k = ⌊p · n / 100⌋`` (exact decimal arithmetic): no group is ever pruned beyond
``p`` percent, however small it is.

* ``P_S`` = the ``k`` smallest ``|original|`` of the group, ``P_T`` = the ``k`` smallest
  ``|optimized|`` (``Â, B̂``, expected in the conserved gauge that ``tropical.solve`` returns; the
  up bias enters ``P_T`` with its original magnitude);
* **tropical** prunes ``P_T ∩ P_S`` (``k_T <= k`` parameters);
* **standard** prunes the ``k_T`` smallest ``|original|`` of the same group.

Ties are broken deterministically. ``P_S``: by original magnitude, then flat index inside the
group. ``P_T``: by optimized magnitude, then original magnitude, then flat index (many entries of
``Â, B̂`` are exact zeros; ranking those by original magnitude keeps Tropical's pruned share close
to ``p``). The flat order of a layer is ``A`` (row-major, so each hidden unit's inputs then its bias), then
``B`` (row-major), then ``up_bias``; scope ``CB`` concatenates the layers in their order.

Scopes (See et al. 2016): ``CU`` class-uniform, each adapter layer is one group; ``CB``
class-blind, all adapter parameters of the model form one group; ``CN`` node-wise, each row of
``A`` (``d+1`` entries: a hidden unit's inputs and bias) and each row of ``[B | up_bias]``
(``r+1`` entries: an output node's inputs and bias) is a group. Classification heads are never
part of any group: ``load_into_model`` only writes the adapters' four tensors per layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real

import torch
from torch import Tensor, nn

__all__ = [
    "AdapterLayer",
    "BASELINES",
    "LayerMask",
    "METHODS",
    "activation_scores",
    "random_scores",
    "SCOPES",
    "apply_masks",
    "extract_layers",
    "layers_to_state_dict",
    "load_into_model",
    "mask_agreement",
    "mask_report",
    "n_to_prune",
    "pruning_masks",
    "stack_layers",
]

SCOPES = ("CU", "CB", "CN")
METHODS = ("standard", "tropical")
#: Baselines beyond the paper, count-matched to Tropical (:func:`random_scores`, :func:`activation_scores`).
BASELINES = ("random", "activation")

_DOWN_W, _DOWN_B = "adapter_down.0.weight", "adapter_down.0.bias"
_UP_W, _UP_B = "adapter_up.weight", "adapter_up.bias"
_PARTS = (_DOWN_W, _DOWN_B, _UP_W, _UP_B)


@dataclass
class AdapterLayer:
    """One bottleneck adapter layer.

    Attributes:
        prefix: parameter-name prefix, e.g. ``"bert.encoder.layer.0.output.adapters.rotten_tomatoes"``.
        A: ``(r, d+1)`` down weight with the down bias as last column.
        B: ``(d, r)`` up weight.
        up_bias: ``(d,)`` up bias.
    """

    prefix: str
    A: Tensor
    B: Tensor
    up_bias: Tensor

    @property
    def n_params(self) -> int:
        return self.A.numel() + self.B.numel() + self.up_bias.numel()


@dataclass
class LayerMask:
    """Pruning mask of one adapter layer; ``True`` = pruned (set to zero).

    Attributes:
        prefix: the layer's ``AdapterLayer.prefix``.
        A: bool ``(r, d+1)``; B: bool ``(d, r)``; up_bias: bool ``(d,)``.
    """

    prefix: str
    A: Tensor
    B: Tensor
    up_bias: Tensor

    @property
    def n_params(self) -> int:
        return self.A.numel() + self.B.numel() + self.up_bias.numel()

    @property
    def n_pruned(self) -> int:
        return int(self.A.sum()) + int(self.B.sum()) + int(self.up_bias.sum())


# --------------------------------------------------------------------------- layers <-> tensors


def _natural_key(s: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t)


def extract_layers(source: nn.Module | Mapping[str, Tensor], adapter_name: str) -> list[AdapterLayer]:
    """Collect the bottleneck adapter ``adapter_name`` of every transformer layer.

    Args:
        source: an ``adapters`` model (its ``state_dict()`` is read) or a mapping of parameter
            names to tensors, e.g. the contents of ``adapter.safetensors``. Keys looked for:
            ``<prefix>.adapter_down.0.{weight,bias}`` and ``<prefix>.adapter_up.{weight,bias}``
            with ``<prefix>`` ending in ``adapters.<adapter_name>``; other keys are ignored.
        adapter_name: the adapter's name.

    Returns:
        One ``AdapterLayer`` per prefix (detached copies, dtype kept), in natural sort order of the
        prefix (layer 2 before layer 10).

    Raises:
        ValueError: no such adapter, a layer misses one of the four tensors, or shapes disagree.
    """
    if isinstance(source, nn.Module):
        tensors = source.state_dict()
    elif isinstance(source, Mapping):
        tensors = source
    else:
        raise TypeError(f"source must be an nn.Module or a Mapping[str, Tensor], got {type(source).__name__}")
    if not isinstance(adapter_name, str) or not adapter_name:
        raise ValueError(f"adapter_name must be a non-empty string, got {adapter_name!r}")
    pat = re.compile(
        r"^(?P<prefix>(?:.*\.)?adapters\."
        + re.escape(adapter_name)
        + r")\.(?P<part>"
        + "|".join(re.escape(p) for p in _PARTS)
        + r")$"
    )
    found: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        m = pat.match(key)
        if m:
            if not isinstance(value, Tensor):
                raise TypeError(f"{key}: expected a tensor, got {type(value).__name__}")
            found.setdefault(m["prefix"], {})[m["part"]] = value
    if not found:
        raise ValueError(
            f"no adapter named {adapter_name!r} found (looked for keys '...adapters.{adapter_name}."
            f"{_DOWN_W}' etc. among {len(tensors)} tensors)"
        )
    layers = []
    for prefix in sorted(found, key=_natural_key):
        parts = found[prefix]
        missing = [p for p in _PARTS if p not in parts]
        if missing:
            raise ValueError(f"adapter layer {prefix!r} lacks {', '.join(prefix + '.' + p for p in missing)}")
        W_d, b_d, W_u, b_u = (parts[p].detach() for p in _PARTS)
        if W_d.dim() != 2 or W_u.dim() != 2 or b_d.dim() != 1 or b_u.dim() != 1:
            raise ValueError(f"adapter layer {prefix!r}: unexpected tensor ranks")
        r, d = W_d.shape
        if b_d.shape != (r,) or W_u.shape != (d, r) or b_u.shape != (d,):
            raise ValueError(
                f"adapter layer {prefix!r}: shapes do not fit a (d={d}, r={r}) bottleneck: down weight "
                f"{tuple(W_d.shape)}, down bias {tuple(b_d.shape)}, up weight {tuple(W_u.shape)}, up bias "
                f"{tuple(b_u.shape)}"
            )
        A = torch.cat([W_d, b_d[:, None].to(W_d.dtype)], dim=1).clone()
        layers.append(AdapterLayer(prefix=prefix, A=A, B=W_u.clone(), up_bias=b_u.clone()))
    return layers


def layers_to_state_dict(layers: Sequence[AdapterLayer]) -> dict[str, Tensor]:
    """Inverse of ``extract_layers``: the four tensors per layer under their full names.

    Returns contiguous, non-shared tensors (safe for ``safetensors.torch.save_file``).
    """
    out: dict[str, Tensor] = {}
    for layer in layers:
        p = layer.prefix
        out[f"{p}.{_DOWN_W}"] = layer.A[:, :-1].contiguous().clone()
        out[f"{p}.{_DOWN_B}"] = layer.A[:, -1].contiguous().clone()
        out[f"{p}.{_UP_W}"] = layer.B.contiguous().clone()
        out[f"{p}.{_UP_B}"] = layer.up_bias.contiguous().clone()
    return out


def stack_layers(layers: Sequence[AdapterLayer]) -> tuple[Tensor, Tensor]:
    """Stack the layers for ``tropical.solve``: ``A (L, r, d+1)``, ``B (L, d, r)``.

    Raises:
        ValueError: no layers, or a layer whose shapes differ from the first one's.
    """
    if len(layers) == 0:
        raise ValueError("stack_layers: no layers given")
    first = layers[0]
    for layer in layers[1:]:
        if layer.A.shape != first.A.shape or layer.B.shape != first.B.shape:
            raise ValueError(
                f"stack_layers: layer {layer.prefix!r} has A {tuple(layer.A.shape)}, B {tuple(layer.B.shape)} "
                f"but {first.prefix!r} has A {tuple(first.A.shape)}, B {tuple(first.B.shape)}"
            )
    return torch.stack([l.A for l in layers]), torch.stack([l.B for l in layers])


# --------------------------------------------------------------------------- masks


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, Real) or not math.isfinite(p) or not 0 < p < 100:
        raise ValueError(f"p must be a percentage in the open interval (0, 100), got {p!r}")
    return float(p)


def _check_optimized(layers: Sequence[AdapterLayer], optimized, what: str = "optimized") -> list[tuple[Tensor, Tensor]]:
    if optimized is None or len(optimized) != len(layers):
        n = "None" if optimized is None else len(optimized)
        raise ValueError(f"{what} must hold one (A_hat, B_hat) pair per layer: {len(layers)} layers, got {n}")
    out = []
    for layer, pair in zip(layers, optimized):
        if len(pair) != 2:
            raise ValueError(f"{what} for layer {layer.prefix!r} must be an (A_hat, B_hat) pair")
        A_hat, B_hat = pair
        if A_hat.shape != layer.A.shape or B_hat.shape != layer.B.shape:
            raise ValueError(
                f"{what} for layer {layer.prefix!r}: A_hat {tuple(A_hat.shape)} / B_hat {tuple(B_hat.shape)} "
                f"do not match A {tuple(layer.A.shape)} / B {tuple(layer.B.shape)}"
            )
        # Â, B̂ may come from another device (e.g. read from disk on the CPU for a model on CUDA).
        out.append((A_hat.detach().to(layer.A.device), B_hat.detach().to(layer.B.device)))
    return out


def n_to_prune(p: float, n: int) -> int:
    """``k = ⌊p · n / 100⌋`` for ``p`` percent of a group of ``n``, in exact decimal arithmetic
    (``p`` as written, e.g. ``94`` or ``2.5``), so that no group is pruned beyond ``p``."""
    return int(Fraction(repr(float(p))) * n // 100)


def _ranks(mag: Tensor, tie: Tensor | None = None) -> Tensor:
    """Rank of every entry in its row, ascending by ``mag``; ties by ``tie`` (if given), then index."""
    order = torch.argsort(mag if tie is None else tie, dim=-1, stable=True)
    if tie is not None:
        order = order.gather(-1, torch.argsort(mag.gather(-1, order), dim=-1, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(mag.shape[-1], device=mag.device).expand_as(order))
    return ranks


def _group_masks(mag_S: Tensor, mag_T: Tensor, p: float, others: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Masks of every method for groups given as rows of ``(G, n)`` matrices: magnitudes for
    ``tropical``/``standard``, and for each of ``others`` a score matrix whose ``k_T`` lowest entries
    per row are pruned (``k_T`` = Tropical's count in that row)."""
    k = n_to_prune(p, mag_S.shape[-1])
    rank_S = _ranks(mag_S)
    tropical = (rank_S < k) & (_ranks(mag_T, tie=mag_S) < k)
    k_T = tropical.sum(-1, keepdim=True)
    out = {"tropical": tropical, "standard": rank_S < k_T}
    for name, score in others.items():
        out[name] = _ranks(score) < k_T
    return out


def _flat(A: Tensor, B: Tensor, ub: Tensor) -> Tensor:
    return torch.cat([A.reshape(-1), B.reshape(-1), ub.reshape(-1)]).to(torch.float64).abs()


def _unflat(prefix: str, flat: Tensor, layer: AdapterLayer) -> LayerMask:
    a, b = layer.A.numel(), layer.B.numel()
    return LayerMask(
        prefix=prefix,
        A=flat[:a].reshape(layer.A.shape),
        B=flat[a : a + b].reshape(layer.B.shape),
        up_bias=flat[a + b :].reshape(layer.up_bias.shape),
    )


def random_scores(layers: Sequence[AdapterLayer], seed: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Baseline ``random``: i.i.d. uniform scores per parameter (float64, CPU generator seeded with
    ``seed``, drawn layer by layer in the flat order ``A``, ``B``, ``up_bias``), on each layer's
    device. The ``k_T`` lowest of a group are pruned, so the masks are nested in ``p``."""
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for layer in layers:
        flat = torch.rand(layer.n_params, generator=gen, dtype=torch.float64).to(layer.A.device)
        m = _unflat(layer.prefix, flat, layer)
        out.append((m.A, m.B, m.up_bias))
    return out


def activation_scores(
    layers: Sequence[AdapterLayer], input_rms: Sequence[tuple[Tensor, Tensor]]
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Baseline ``activation`` (Wanda, Sun et al. 2023): ``|W_ij| · rms(X_j)`` per weight.

    Args:
        layers: the original adapter layers (``A`` ``(r, d+1)``, ``B`` ``(d, r)``, ``up_bias`` ``(d,)``).
        input_rms: per layer ``(down_in (d,), up_in (r,))``: the root mean square over calibration
            tokens of each input feature of ``adapter_down`` (the hidden states) and of
            ``adapter_up`` (the ReLU bottleneck activations); see ``stages.calibrate``.

    Returns:
        Per layer ``(score_A (r, d+1), score_B (d, r), score_up_bias (d,))`` (float64): the down
        weights scored ``|A_ij| · down_in_j``, the up weights ``|B_ij| · up_in_j``, and both biases by
        magnitude (a bias's input is the constant 1, whose RMS is 1). Wanda's ``‖X_j‖₂`` is
        ``sqrt(n_tokens) · rms(X_j)``: the common factor changes no ranking among weights, and the
        RMS puts weights and biases on one scale.
    """
    if len(input_rms) != len(layers):
        raise ValueError(f"activation_scores: {len(layers)} layers but {len(input_rms)} input norms")
    out = []
    for layer, (down_in, up_in) in zip(layers, input_rms):
        r, d1 = layer.A.shape
        if tuple(down_in.shape) != (d1 - 1,) or tuple(up_in.shape) != (r,):
            raise ValueError(
                f"layer {layer.prefix!r}: input norms of shapes {tuple(down_in.shape)}, {tuple(up_in.shape)} do not "
                f"fit A {tuple(layer.A.shape)} (expected ({d1 - 1},), ({r},))"
            )
        dev = layer.A.device
        x_down = torch.cat([down_in.to(dev, torch.float64), torch.ones(1, dtype=torch.float64, device=dev)])
        out.append(
            (
                layer.A.to(torch.float64).abs() * x_down[None, :],
                layer.B.to(torch.float64).abs() * up_in.to(dev, torch.float64)[None, :],
                layer.up_bias.to(torch.float64).abs(),
            )
        )
    return out


def pruning_masks(
    layers: Sequence[AdapterLayer],
    optimized: Sequence[tuple[Tensor, Tensor]],
    p: float,
    scope: str,
    *,
    scores: Mapping[str, Sequence[tuple[Tensor, Tensor, Tensor]]] | None = None,
) -> dict[str, list[LayerMask]]:
    """Standard and Tropical masks (and baselines') of all layers for pruning percentage ``p`` in ``scope``.

    Args:
        layers: the original adapter layers (``extract_layers``).
        optimized: one ``(A_hat, B_hat)`` per layer (``tropical.solve``), shapes as ``A``, ``B``;
            on any device (moved to each layer's).
        p: pruning percentage in ``(0, 100)``.
        scope: ``"CU"``, ``"CB"`` or ``"CN"`` (module docstring).
        scores: optional baselines, ``{name: per layer (score_A, score_B, score_up_bias)}``
            (nonnegative, shapes of ``A``, ``B``, ``up_bias``; e.g. :func:`random_scores`,
            :func:`activation_scores`): each prunes the lowest scores of every scope group, as many
            as Tropical prunes there (ties by flat index).

    Returns:
        ``{"tropical": [LayerMask, ...], "standard": [LayerMask, ...], **{name: ...}}``, one mask per
        layer in the order of ``layers``. In every scope group every method prunes exactly as many
        parameters as the tropical one.
    """
    p = _check_p(p)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if len(layers) == 0:
        raise ValueError("pruning_masks: no layers given")
    opt = _check_optimized(layers, optimized)
    scores = dict(scores or {})
    for name, per_layer in scores.items():
        if name in ("tropical", "standard"):
            raise ValueError(f"scores: {name!r} is a built-in method")
        if len(per_layer) != len(layers):
            raise ValueError(f"scores[{name!r}]: {len(layers)} layers but {len(per_layer)} score triples")
        for layer, sc in zip(layers, per_layer):
            for part, s, t in zip(("A", "B", "up_bias"), sc, (layer.A, layer.B, layer.up_bias)):
                if s.shape != t.shape:
                    raise ValueError(
                        f"scores[{name!r}] of {layer.prefix!r}: {part} {tuple(s.shape)} != {tuple(t.shape)}"
                    )
    for layer, (A_hat, B_hat) in zip(layers, opt):
        for name, t in (("A", layer.A), ("B", layer.B), ("up_bias", layer.up_bias), ("A_hat", A_hat), ("B_hat", B_hat)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"layer {layer.prefix!r}: {name} contains NaN or inf")
    names = ("tropical", "standard", *scores)
    out: dict[str, list[LayerMask]] = {name: [] for name in names}
    dev = [layer.A.device for layer in layers]
    sc_flat = {
        name: [_flat(*(s.to(dv) for s in sc)) for sc, dv in zip(per_layer, dev)] for name, per_layer in scores.items()
    }
    if scope == "CU":
        for k, (layer, (A_hat, B_hat)) in enumerate(zip(layers, opt)):
            got = _group_masks(
                _flat(layer.A, layer.B, layer.up_bias)[None],
                _flat(A_hat, B_hat, layer.up_bias)[None],
                p,
                {name: f[k][None] for name, f in sc_flat.items()},
            )
            for name in names:
                out[name].append(_unflat(layer.prefix, got[name][0], layer))
    elif scope == "CB":
        mag_S = torch.cat([_flat(l.A, l.B, l.up_bias) for l in layers])
        mag_T = torch.cat([_flat(Ah, Bh, l.up_bias) for l, (Ah, Bh) in zip(layers, opt)])
        got = _group_masks(mag_S[None], mag_T[None], p, {name: torch.cat(f)[None] for name, f in sc_flat.items()})
        start = 0
        for layer in layers:
            stop = start + layer.n_params
            for name in names:
                out[name].append(_unflat(layer.prefix, got[name][0, start:stop], layer))
            start = stop
    else:  # CN: rows of A, rows of [B | up_bias]
        for k, (layer, (A_hat, B_hat)) in enumerate(zip(layers, opt)):
            a_others, b_others = {}, {}
            for name, per_layer in scores.items():
                sA, sB, sub = (s.to(dev[k], torch.float64) for s in per_layer[k])
                a_others[name] = sA
                b_others[name] = torch.cat([sB, sub[:, None]], 1)
            a_got = _group_masks(layer.A.to(torch.float64).abs(), A_hat.to(torch.float64).abs(), p, a_others)
            ub = layer.up_bias[:, None].to(torch.float64)
            b_got = _group_masks(
                torch.cat([layer.B.to(torch.float64), ub], 1).abs(),
                torch.cat([B_hat.to(torch.float64), ub], 1).abs(),
                p,
                b_others,
            )
            for name in names:
                am, bm = a_got[name], b_got[name]
                out[name].append(
                    LayerMask(prefix=layer.prefix, A=am, B=bm[:, :-1].contiguous(), up_bias=bm[:, -1].contiguous())
                )
    return out


def apply_masks(
    layers: Sequence[AdapterLayer],
    masks: Sequence[LayerMask],
    *,
    values: str = "original",
    optimized: Sequence[tuple[Tensor, Tensor]] | None = None,
) -> list[AdapterLayer]:
    """New layers with the masked parameters set to (real) zero.

    Args:
        layers: original layers.
        masks: one ``LayerMask`` per layer (same order and prefixes), e.g.
            ``pruning_masks(...)["tropical"]``.
        values: ``"original"`` (paper): survivors keep their original values; ``"optimized"``:
            survivors of ``A``/``B`` take the ``A_hat``/``B_hat`` values (the up bias is not
            optimized and keeps its original value). Note that optimized values may themselves be
            exactly zero, so the result can hold more zeros than the mask prunes.
        optimized: the ``(A_hat, B_hat)`` pairs; required iff ``values="optimized"``.

    Returns:
        New ``AdapterLayer`` objects (inputs are not modified), dtypes of ``layers``.
    """
    if values not in ("original", "optimized"):
        raise ValueError(f"values must be 'original' or 'optimized', got {values!r}")
    if len(masks) != len(layers):
        raise ValueError(f"apply_masks: {len(layers)} layers but {len(masks)} masks")
    if values == "optimized":
        opt = _check_optimized(layers, optimized)
    elif optimized is not None:
        raise ValueError("optimized is only used with values='optimized'")
    out = []
    for k, (layer, mask) in enumerate(zip(layers, masks)):
        if mask.prefix != layer.prefix:
            raise ValueError(f"mask {k} is for {mask.prefix!r} but layer {k} is {layer.prefix!r}")
        for name in ("A", "B", "up_bias"):
            m, t = getattr(mask, name), getattr(layer, name)
            if m.shape != t.shape or m.dtype != torch.bool:
                raise ValueError(
                    f"mask of layer {layer.prefix!r}: {name} must be bool {tuple(t.shape)}, "
                    f"got {m.dtype} {tuple(m.shape)}"
                )
        A, B = layer.A, layer.B
        if values == "optimized":
            A, B = opt[k][0].to(A.dtype), opt[k][1].to(B.dtype)
        out.append(
            AdapterLayer(
                prefix=layer.prefix,
                A=A.masked_fill(mask.A, 0),
                B=B.masked_fill(mask.B, 0),
                up_bias=layer.up_bias.masked_fill(mask.up_bias, 0),
            )
        )
    return out


def mask_report(masks: Sequence[LayerMask]) -> list[dict]:
    """Per layer ``{"layer": prefix, "n_params": int, "n_pruned": int}`` (mask counts)."""
    return [{"layer": m.prefix, "n_params": m.n_params, "n_pruned": m.n_pruned} for m in masks]


def mask_agreement(masks: Sequence[LayerMask], reference: Sequence[LayerMask]) -> dict[str, float]:
    """How far ``masks`` is from ``reference`` (e.g. Tropical vs the equal-count Standard mask).

    Returns:
        ``{"jaccard_retained": |R ∩ R_ref| / |R ∪ R_ref|`` over the retained (unpruned) sets of all
        layers (1.0 when identical), ``"pruned_outside": |P \\ P_ref| / |P|`` the share of the
        parameters ``masks`` prunes that ``reference`` keeps (0.0 when ``masks`` prunes nothing)}.
        For a Tropical mask and its count-matched Standard mask, ``reference`` is ``P_S`` at
        ``p̂`` of every scope group, so ``pruned_outside`` says how much of Tropical's choice
        magnitude would not have made.
    """
    if len(masks) != len(reference):
        raise ValueError(f"mask_agreement: {len(masks)} masks but {len(reference)} reference masks")
    inter = union = pruned = outside = 0
    for m, ref in zip(masks, reference):
        if m.prefix != ref.prefix:
            raise ValueError(f"mask_agreement: layer {m.prefix!r} compared with {ref.prefix!r}")
        for a, b in ((m.A, ref.A), (m.B, ref.B), (m.up_bias, ref.up_bias)):
            inter += int((~a & ~b).sum())
            union += int((~a | ~b).sum())
            pruned += int(a.sum())
            outside += int((a & ~b).sum())
    return {
        "jaccard_retained": inter / union if union else 1.0,
        "pruned_outside": outside / pruned if pruned else 0.0,
    }


def load_into_model(model: nn.Module, layers: Sequence[AdapterLayer]) -> None:
    """Copy the layers' tensors into the model's adapter parameters, in place.

    Only the four adapter tensors per layer are written (heads and backbone are untouched);
    values are cast to each parameter's dtype and device.

    Raises:
        KeyError: a parameter name is not in the model. ValueError: a shape mismatch.
    """
    params = dict(model.named_parameters())
    sd = layers_to_state_dict(layers)
    missing = [k for k in sd if k not in params]
    if missing:
        raise KeyError(f"model has no parameter(s) {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    for key, value in sd.items():
        if params[key].shape != value.shape:
            raise ValueError(f"{key}: model has shape {tuple(params[key].shape)}, layer gives {tuple(value.shape)}")
    with torch.no_grad():
        for key, value in sd.items():
            params[key].copy_(value)
