"""The shared mechanics of pruning: adapter-layer extraction, scope groups, counts, masks, applying them.

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
* **standard** prunes the ``k_T`` smallest ``|original|`` of the same group;
* a :class:`Ranking` (every other method; ``adapter_pruning.methods`` defines them and their scores)
  prunes the lowest scores of the group, ``k_T`` of them (count-matched to Tropical) or ``k``.

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

The unit scope ``UN`` (:data:`UNIT_SCOPE`, structured pruning) removes whole bottleneck units: unit
``j`` of a layer is row ``j`` of ``A`` (its ``d`` input weights and its bias) and column ``j`` of
``B``; a removed unit contributes exactly nothing (``ReLU(0) = 0``), so the pruned layer is a
narrower bottleneck (:mod:`adapter_pruning.structured`). Layer ``l`` of width ``r_l`` removes
``k_l = min(⌊p · r_l / 100⌋, r_l − 1)`` units (:func:`n_units_to_remove`: at least one unit is kept),
the ``k_l`` lowest of a per-unit score (:func:`unit_masks`, ties by a secondary score if given,
then by unit index); the up bias is never removed. Every method removes the same number of units
per layer, so all are count-matched by construction; :func:`unit_method_masks` gives a method's
:class:`MethodMasks` with Standard's unit mask (:func:`magnitude_unit_scores`) as the reference.
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
    "ALL_SCOPES",
    "AdapterLayer",
    "COUNTS",
    "LayerMask",
    "METHODS",
    "MethodMasks",
    "Ranking",
    "SCOPES",
    "UNIT_SCOPE",
    "apply_masks",
    "extract_layers",
    "layers_to_state_dict",
    "load_into_model",
    "mask_agreement",
    "magnitude_unit_scores",
    "check_unit_scores",
    "mask_report",
    "method_masks",
    "n_to_prune",
    "n_units_to_remove",
    "pruning_masks",
    "stack_layers",
    "unit_layer_mask",
    "unit_masks",
    "unit_method_masks",
]

#: The element scopes: each prunes single parameters within its scope groups.
SCOPES = ("CU", "CB", "CN")
#: The unit scope: whole bottleneck units per layer (structured pruning).
UNIT_SCOPE = "UN"
#: Every scope a state can have.
ALL_SCOPES = (*SCOPES, UNIT_SCOPE)
#: The paper's two methods, built into :func:`method_masks`; the others are rankings
#: (:class:`Ranking`) that ``adapter_pruning.methods`` defines.
METHODS = ("standard", "tropical")

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


def _group_masks(mag_S: Tensor, mag_T: Tensor | None, p: float, rankings: Mapping[str, _Rows]) -> dict[str, tuple]:
    """Masks of every method for groups given as rows of ``(G, n)`` matrices.

    ``mag_S``, ``mag_T``: original and optimized magnitudes (``mag_T`` None: no Tropical mask, and no
    ranking may be count-matched to it). ``rankings``: per method ``(score, tie, count)`` rows, ``score``
    None for the original magnitudes. Returns per method ``(mask, reference, slack)``: the pruned
    entries, Standard's mask with the same count in every row, and per row the slack: the most entries
    in which the method's mask can differ from the reference's pruned set, i.e. the number of
    reference-pruned entries it can keep, ``min(count, candidates)`` with ``candidates`` the entries the
    reference keeps that the method's rule allows it to prune (``tropical``: ``min(k_T, k - k_T)``, which
    is METHOD.md's ``|P_S| - k_T`` whenever ``k_T ≥ k / 2``; a free ranking: ``min(count, n - count)``;
    magnitude: 0)."""
    n = mag_S.shape[-1]
    k = n_to_prune(p, n)
    rank_S = _ranks(mag_S)
    P_S = rank_S < k
    zero = torch.zeros(mag_S.shape[0], dtype=torch.int64, device=mag_S.device)
    out: dict[str, tuple] = {}
    k_T = ref_T = None
    if mag_T is not None:
        tropical = P_S & (_ranks(mag_T, tie=mag_S) < k)
        k_T = tropical.sum(-1, keepdim=True)
        ref_T = rank_S < k_T
        out["tropical"] = (tropical, ref_T, torch.minimum(k_T[:, 0], k - k_T[:, 0]))
        out["standard"] = (ref_T, ref_T, zero)
    for name, (score, tie, count) in rankings.items():
        if count == "tropical":
            if k_T is None:
                raise ValueError(f"method {name!r} is count-matched to Tropical, which needs the optimized tensors")
            c, ref = k_T, ref_T
        else:
            c, ref = k, P_S
        if score is None:
            out[name] = (ref, ref, zero)
        else:
            count_ = c[:, 0] if isinstance(c, Tensor) else zero + c
            out[name] = (_ranks(score, tie) < c, ref, torch.minimum(count_, n - count_))
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


#: What a ranking method's count is matched to in every scope group: ``tropical`` = Tropical's count
#: ``k_T`` there (count matching), ``p`` = ``k = ⌊p · n / 100⌋`` (the count of ``P_S`` and ``P_T``).
COUNTS = ("tropical", "p")

_Triples = Sequence[tuple[Tensor, Tensor, Tensor]]
_Rows = tuple[Tensor | None, Tensor | None, str]


@dataclass(frozen=True)
class Ranking:
    """How a ranking method chooses its pruned set in every scope group.

    Attributes:
        scores: per layer ``(score_A (r, d+1), score_B (d, r), score_up_bias (d,))``, nonnegative
            (compared as float64 absolute values); the lowest are pruned. ``None``: the original
            magnitudes ``|A|, |B|, |up_bias|`` (magnitude pruning: the reference mask itself).
        count: an entry of :data:`COUNTS`: ``tropical`` prunes ``k_T`` (Tropical's count in the group),
            ``p`` prunes ``k = ⌊p · n / 100⌋``.
        tie: optional per-layer triples of the same shapes: equal scores are ordered by ``tie``, then
            by flat index (without it, by flat index).
    """

    scores: _Triples | None = None
    count: str = "tropical"
    tie: _Triples | None = None


@dataclass
class MethodMasks:
    """One method's masks at one ``p`` and scope.

    Attributes:
        masks: one :class:`LayerMask` per layer (``True`` = pruned).
        reference: Standard's mask with the same count in every scope group (the ``c`` smallest
            original magnitudes, ``c`` = the method's count there): ``mask_agreement(masks, reference)``
            gives the mask diagnostics ``jaccard_standard`` and ``pruned_outside_standard``.
        slack: summed over the scope groups, the most entries in which the method's pruned set can
            differ from ``reference``'s: the number of reference-pruned entries its rule lets it keep,
            ``min(c, candidates)`` with ``candidates`` the entries the reference keeps that it may prune
            instead. Tropical (``P_T ∩ P_S``) may prune only inside ``P_S``: ``min(k_T, k - k_T)`` per
            group (METHOD.md's ``|P_S| - k_T`` wherever ``k_T ≥ k / 2``, every state of the study); a free
            ranking of ``c`` entries ``min(c, n - c)``; magnitude pruning none.
    """

    masks: list[LayerMask]
    reference: list[LayerMask]
    slack: int


def _triple_flat(triple, dev) -> Tensor:
    return _flat(*(t.to(dev) for t in triple))


def _check_triples(name: str, what: str, layers: Sequence[AdapterLayer], per_layer) -> None:
    if len(per_layer) != len(layers):
        raise ValueError(f"{what}[{name!r}]: {len(layers)} layers but {len(per_layer)} score triples")
    for layer, sc in zip(layers, per_layer):
        for part, s, t in zip(("A", "B", "up_bias"), sc, (layer.A, layer.B, layer.up_bias)):
            if s.shape != t.shape:
                raise ValueError(f"{what}[{name!r}] of {layer.prefix!r}: {part} {tuple(s.shape)} != {tuple(t.shape)}")


def method_masks(
    layers: Sequence[AdapterLayer],
    optimized: Sequence[tuple[Tensor, Tensor]] | None,
    p: float,
    scope: str,
    rankings: Mapping[str, Ranking] | None = None,
) -> dict[str, MethodMasks]:
    """The masks of Tropical, Standard and of each ranking method at pruning percentage ``p`` in ``scope``.

    Args:
        layers: the original adapter layers (``extract_layers``).
        optimized: one ``(A_hat, B_hat)`` per layer (``tropical.solve``), shapes as ``A``, ``B``; on
            any device (moved to each layer's). ``None``: no Tropical (and no count-matched) masks.
        p: pruning percentage in ``(0, 100)``.
        scope: ``"CU"``, ``"CB"`` or ``"CN"`` (module docstring).
        rankings: further methods by name (not ``tropical`` or ``standard``), each a :class:`Ranking`.

    Returns:
        ``{"tropical": ..., "standard": ..., **{name: ...}}`` (the first two only with ``optimized``):
        per method its :class:`MethodMasks`, one mask per layer in the order of ``layers``. In every
        scope group a method with ``count="tropical"`` prunes exactly as many parameters as Tropical
        there, one with ``count="p"`` exactly ``⌊p · n / 100⌋``.
    """
    p = _check_p(p)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if len(layers) == 0:
        raise ValueError("pruning_masks: no layers given")
    opt = _check_optimized(layers, optimized) if optimized is not None else None
    rankings = dict(rankings or {})
    for name, rk in rankings.items():
        if name in ("tropical", "standard"):
            raise ValueError(f"scores: {name!r} is a built-in method")
        if rk.count not in COUNTS:
            raise ValueError(f"ranking {name!r}: count must be one of {COUNTS}, got {rk.count!r}")
        for what, per_layer in (("scores", rk.scores), ("tie", rk.tie)):
            if per_layer is not None:
                _check_triples(name, what, layers, per_layer)
    for k, layer in enumerate(layers):
        named = [("A", layer.A), ("B", layer.B), ("up_bias", layer.up_bias)]
        if opt is not None:
            named += [("A_hat", opt[k][0]), ("B_hat", opt[k][1])]
        for name, t in named:
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"layer {layer.prefix!r}: {name} contains NaN or inf")
    names = (("tropical", "standard") if opt is not None else ()) + tuple(rankings)
    masks: dict[str, list[LayerMask]] = {name: [] for name in names}
    refs: dict[str, list[LayerMask]] = {name: [] for name in names}
    slack = dict.fromkeys(names, 0)
    dev = [layer.A.device for layer in layers]

    def collect(got, split):
        for name in names:
            mask, ref, sl = got[name]
            slack[name] += int(sl.sum())
            masks[name].extend(split(mask))
            refs[name].extend(split(ref))

    if scope in ("CU", "CB"):
        flat_S = [_flat(l.A, l.B, l.up_bias) for l in layers]
        flat_T = None if opt is None else [_flat(Ah, Bh, l.up_bias) for l, (Ah, Bh) in zip(layers, opt)]
        flat_R = {
            name: tuple(
                None if per_layer is None else [_triple_flat(t, dv) for t, dv in zip(per_layer, dev)]
                for per_layer in (rk.scores, rk.tie)
            )
            for name, rk in rankings.items()
        }
        if scope == "CU":
            for k, layer in enumerate(layers):
                rows = {
                    name: (
                        None if sc is None else sc[k][None],
                        None if tie is None else tie[k][None],
                        rankings[name].count,
                    )
                    for name, (sc, tie) in flat_R.items()
                }
                got = _group_masks(flat_S[k][None], None if flat_T is None else flat_T[k][None], p, rows)
                collect(got, lambda m, layer=layer: [_unflat(layer.prefix, m[0], layer)])
        else:
            rows = {
                name: (
                    None if sc is None else torch.cat(sc)[None],
                    None if tie is None else torch.cat(tie)[None],
                    rankings[name].count,
                )
                for name, (sc, tie) in flat_R.items()
            }
            got = _group_masks(torch.cat(flat_S)[None], None if flat_T is None else torch.cat(flat_T)[None], p, rows)

            def split_cb(m):
                out, start = [], 0
                for layer in layers:
                    stop = start + layer.n_params
                    out.append(_unflat(layer.prefix, m[0, start:stop], layer))
                    start = stop
                return out

            collect(got, split_cb)
    else:  # CN: rows of A, rows of [B | up_bias]
        for k, layer in enumerate(layers):

            def a_rows(triple):
                return triple[0].to(dev[k], torch.float64).abs()

            def b_rows(triple):
                sB, sub = (t.to(dev[k], torch.float64) for t in triple[1:])
                return torch.cat([sB, sub[:, None]], 1).abs()

            a_rk, b_rk = {}, {}
            for name, rk in rankings.items():
                a_rk[name] = tuple(None if t is None else a_rows(t[k]) for t in (rk.scores, rk.tie)) + (rk.count,)
                b_rk[name] = tuple(None if t is None else b_rows(t[k]) for t in (rk.scores, rk.tie)) + (rk.count,)
            orig = (layer.A, layer.B, layer.up_bias)
            hat = None if opt is None else (opt[k][0], opt[k][1], layer.up_bias)
            a_got = _group_masks(a_rows(orig), None if hat is None else a_rows(hat), p, a_rk)
            b_got = _group_masks(b_rows(orig), None if hat is None else b_rows(hat), p, b_rk)
            for name in names:
                (am, aref, asl), (bm, bref, bsl) = a_got[name], b_got[name]
                slack[name] += int(asl.sum()) + int(bsl.sum())
                for store, a, b in ((masks, am, bm), (refs, aref, bref)):
                    store[name].append(
                        LayerMask(prefix=layer.prefix, A=a, B=b[:, :-1].contiguous(), up_bias=b[:, -1].contiguous())
                    )
    return {name: MethodMasks(masks=masks[name], reference=refs[name], slack=slack[name]) for name in names}


def pruning_masks(
    layers: Sequence[AdapterLayer],
    optimized: Sequence[tuple[Tensor, Tensor]],
    p: float,
    scope: str,
    *,
    scores: Mapping[str, _Triples] | None = None,
) -> dict[str, list[LayerMask]]:
    """Standard and Tropical masks (and those of count-matched scores) of all layers for pruning
    percentage ``p`` in ``scope``: the ``masks`` of :func:`method_masks`.

    Args:
        layers, optimized, p, scope: as :func:`method_masks` (``optimized`` required).
        scores: optional ``{name: per layer (score_A, score_B, score_up_bias)}`` (shapes of ``A``,
            ``B``, ``up_bias``; e.g. ``methods.random_baseline.random_scores``): each prunes the lowest
            scores of every scope group, as many as Tropical prunes there (ties by flat index).

    Returns:
        ``{"tropical": [LayerMask, ...], "standard": [LayerMask, ...], **{name: ...}}``, one mask per
        layer in the order of ``layers``. In every scope group every method prunes exactly as many
        parameters as the tropical one.
    """
    if optimized is None:
        raise ValueError("optimized must hold one (A_hat, B_hat) pair per layer: got None")
    rankings = {name: Ranking(scores=per_layer) for name, per_layer in (scores or {}).items()}
    return {name: mm.masks for name, mm in method_masks(layers, optimized, p, scope, rankings).items()}


# --------------------------------------------------------------------------- unit scope (structured)


def n_units_to_remove(p: float, r: int) -> int:
    """``k = min(⌊p · r / 100⌋, r − 1)``: the units a layer of width ``r`` loses at pruning percentage
    ``p`` (exact decimal arithmetic as :func:`n_to_prune`; at least one unit is kept)."""
    if r < 1:
        raise ValueError(f"a bottleneck needs at least one unit, got width {r}")
    return min(n_to_prune(p, r), r - 1)


def unit_layer_mask(layer: AdapterLayer, removed: Tensor) -> LayerMask:
    """The :class:`LayerMask` that removes the units ``removed`` (bool ``(r,)``, ``True`` = removed)
    of ``layer``: row ``j`` of ``A`` (weights and bias) and column ``j`` of ``B`` for every removed
    ``j``; the up bias is never masked."""
    r = layer.A.shape[0]
    removed = removed.to(device=layer.A.device, dtype=torch.bool)
    if removed.shape != (r,):
        raise ValueError(f"layer {layer.prefix!r}: unit mask of shape {tuple(removed.shape)}, expected ({r},)")
    return LayerMask(
        prefix=layer.prefix,
        A=removed[:, None].expand(layer.A.shape).clone(),
        B=removed[None, :].expand(layer.B.shape).clone(),
        up_bias=torch.zeros(layer.up_bias.shape, dtype=torch.bool, device=layer.up_bias.device),
    )


def magnitude_unit_scores(layers: Sequence[AdapterLayer]) -> list[Tensor]:
    """Per layer ``(r,)`` float64: ``‖a_j‖ · ‖b_j‖``, the Euclidean norms of row ``j`` of ``A`` (with
    its bias) and of column ``j`` of ``B``. Invariant to the per-unit scale split
    ``a_j → α a_j, b_j → b_j / α`` (``α > 0``), which changes neither the adapter's function nor this
    product (per-weight magnitudes change with it)."""
    return [
        torch.linalg.vector_norm(layer.A.to(torch.float64), dim=1)
        * torch.linalg.vector_norm(layer.B.to(torch.float64), dim=0)
        for layer in layers
    ]


def check_unit_scores(layers: Sequence[AdapterLayer], scores, what: str) -> list[Tensor]:
    """``scores`` as one float64 ``(r,)`` vector per layer on the layer's device; ``ValueError`` naming
    ``what`` and the layer for a wrong count, shape or a non-finite value."""
    if scores is None or len(scores) != len(layers):
        n = "None" if scores is None else len(scores)
        raise ValueError(f"{what}: one (r,) score vector per layer: {len(layers)} layers, got {n}")
    out = []
    for layer, s in zip(layers, scores):
        r = layer.A.shape[0]
        if tuple(s.shape) != (r,):
            raise ValueError(f"{what} of layer {layer.prefix!r}: shape {tuple(s.shape)}, expected ({r},)")
        s = s.detach().to(layer.A.device, torch.float64)
        if not bool(torch.isfinite(s).all()):
            raise ValueError(f"{what} of layer {layer.prefix!r} contain NaN or inf")
        out.append(s)
    return out


def unit_masks(
    layers: Sequence[AdapterLayer],
    unit_scores: Sequence[Tensor],
    p: float,
    *,
    tie: Sequence[Tensor] | None = None,
) -> list[LayerMask]:
    """The masks that remove, in every layer, its :func:`n_units_to_remove` lowest-scored units.

    Args:
        layers: the adapter layers (``extract_layers``).
        unit_scores: per layer ``(r,)`` scores (compared as float64); the lowest go first.
        p: pruning percentage in ``(0, 100)``: the share of each layer's units removed, rounded down,
            at least one unit kept.
        tie: optional per layer ``(r,)``: equal scores are ordered by ``tie``, then by unit index
            (without it, by unit index).

    Returns:
        One :class:`LayerMask` per layer (:func:`unit_layer_mask`). The removed sets are nested in
        ``p`` (same scores, a larger count removes a superset).
    """
    p = _check_p(p)
    if len(layers) == 0:
        raise ValueError("unit_masks: no layers given")
    scores = check_unit_scores(layers, unit_scores, "unit scores")
    ties = None if tie is None else check_unit_scores(layers, tie, "unit tie scores")
    out = []
    for k, (layer, s) in enumerate(zip(layers, scores)):
        ranks = _ranks(s[None], None if ties is None else ties[k][None])[0]
        out.append(unit_layer_mask(layer, ranks < n_units_to_remove(p, s.shape[0])))
    return out


def unit_method_masks(
    layers: Sequence[AdapterLayer],
    unit_scores: Sequence[Tensor],
    p: float,
    *,
    tie: Sequence[Tensor] | None = None,
    magnitude: bool = False,
) -> MethodMasks:
    """One method's :class:`MethodMasks` under the unit scope at ``p``: its :func:`unit_masks`; as
    ``reference`` Standard's unit masks (:func:`magnitude_unit_scores`, ties by unit index), which
    remove the same number of units in every layer; ``slack`` the most parameters in which the
    method's pruned set can differ from Standard's (the rule of :class:`MethodMasks` for a free
    ranking, ``min(count, candidates)``, in units): ``min(k_l, r_l − k_l) · (2d + 1)`` summed over the
    layers, and 0 for Standard itself (``magnitude=True``: ``unit_scores`` are the magnitudes)."""
    chosen = unit_masks(layers, unit_scores, p, tie=tie)
    reference = chosen if magnitude else unit_masks(layers, magnitude_unit_scores(layers), p)
    slack = 0
    if not magnitude:
        for layer in layers:
            r, d1 = layer.A.shape
            k = n_units_to_remove(p, r)
            slack += min(k, r - k) * (2 * d1 - 1)
    return MethodMasks(masks=chosen, reference=reference, slack=slack)


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
