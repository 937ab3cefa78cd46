"""The mask methods: a registry with one module per method or family.

A method is a :class:`MaskMethod`: its name, what it reads besides the adapter (:data:`NEEDS`), how it
chooses its pruned set in every scope group (the Tropical rule ``P_T ∩ P_S``, or the lowest entries
of a :class:`~adapter_pruning.masks.Ranking` built from its scores, count-matched to Tropical or
pruning ``⌊p · n / 100⌋``) and which values its surviving weights take. The shared mechanics (scope
groups, rounding, count matching, applying masks) are :mod:`adapter_pruning.masks`; the formulas,
sources and choices of every method are in ``docs/METHOD.md``.

The workflow asks this registry what the configured methods need (``rules/common.smk``): a prune job
reads the tropical solve's ``Â, B̂`` and exactly the calibration statistics (rule ``calibrate``) that
its methods need, and ``calibrate`` is in the DAG only when a method needs one. Adding a method is
one module in this package, its name in :func:`_registry` and its tests.

This file imports nothing heavy (no torch): Snakemake reads the registry while it builds the DAG,
and ``adapter-prune --help`` lists its names.

===============  ==========================================================================  ===================
method           mask                                                                        needs
===============  ==========================================================================  ===================
standard         the ``k_T`` smallest ``|A, B|`` (count-matched to Tropical)                 optimized
standard_ps      ``P_S``: the ``k`` smallest ``|A, B|`` (Standard at ``p``)                  --
tropical         ``P_T ∩ P_S`` (the paper)                                                   optimized
tropical_pt      ``P_T`` alone: the ``k`` smallest ``|Â, B̂|``                                 optimized
tropical_opt     Tropical's mask, survivors take their ``Â, B̂`` values                        optimized
random           seeded uniform scores, count-matched                                        optimized
activation       ``|W_ij| · rms(X_j)`` (Wanda), count-matched                                optimized, input_rms
taylor           ``|w · ∂L/∂w|`` (first-order Taylor / SNIP), count-matched                  optimized, gradients
sparsegpt        ``w² / [H⁻¹]_jj`` per linear map, OBS update of the survivors, count-matched  optimized, second_moments
===============  ==========================================================================  ===================
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALIBRATION",
    "COUNT_RULES",
    "NEEDS",
    "REGISTRY",
    "MaskMethod",
    "PruneInputs",
    "calibration_needed",
    "get",
    "names",
    "needs_of",
]

#: What a method can read besides the adapter, and the rule that makes it.
NEEDS: dict[str, str] = {
    "optimized": "Â, B̂ of the state's λ, in the conserved gauge (rule tropical_solve)",
    "input_rms": "per adapter layer the RMS over calibration tokens of each input feature of adapter_down "
    "and adapter_up (rule calibrate)",
    "second_moments": "per adapter layer H = XᵀX / N of the inputs of adapter_down and adapter_up, each with "
    "the constant input 1 of the bias appended (rule calibrate)",
    "gradients": "per adapter layer the gradient of the mean task loss over the calibration examples with "
    "respect to A, B and the up bias (rule calibrate)",
}
#: The calibration statistics, in the order rule calibrate writes them (one file each).
CALIBRATION = ("input_rms", "second_moments", "gradients")
#: How a method's count is set in each scope group: ``intersection`` = Tropical's rule ``P_T ∩ P_S``
#: (``k_T`` parameters), ``tropical`` = a ranking count-matched to it (``k_T``), ``p`` = a ranking
#: pruning ``k = ⌊p · n / 100⌋`` (the count of ``P_S`` and ``P_T``).
COUNT_RULES = ("intersection", "tropical", "p")
#: Values of the surviving weights: the original ones, Tropical's ``Â, B̂`` (the up bias is not
#: optimized and keeps its value), or the method's own update (``MaskMethod.update``).
SURVIVORS = ("original", "optimized", "updated")


@dataclass
class PruneInputs:
    """What a method's scores and updates are computed from: the adapter's layers
    (``masks.AdapterLayer``), the optimized ``(Â, B̂)`` per layer (or None), the run's seed and the
    calibration statistics read so far (``{statistic: per-layer data}``, :mod:`adapter_pruning.artifacts`)."""

    layers: Sequence[Any]
    optimized: Sequence[Any] | None = None
    seed: int = 0
    calibration: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def need(self, what: str, method: str):
        """The input ``what`` (``optimized`` or a calibration statistic) for ``method``, or a
        ``ValueError`` naming both and the rule that makes it."""
        got = self.optimized if what == "optimized" else self.calibration.get(what)
        if got is None:
            raise ValueError(f"method {method!r} needs {what}: {NEEDS[what]}")
        return got


@dataclass(frozen=True)
class MaskMethod:
    """One mask method.

    Attributes:
        name: its name in ``pruning.methods``, paths and ``results.parquet``.
        summary: one line for the docs and ``adapter-prune --help``.
        count: an entry of :data:`COUNT_RULES`.
        needs: its inputs beyond the adapter, keys of :data:`NEEDS` (``optimized`` is added for every
            method whose count depends on Tropical's, see :attr:`requires`).
        scores: ``scores(inputs) -> per layer (score_A, score_B, score_up_bias)`` (nonnegative; the
            lowest are pruned); None with a ranking count: the original magnitudes.
        tie: like ``scores``, the secondary key among equal scores (then the flat index).
        survivors: an entry of :data:`SURVIVORS`.
        update: with ``survivors="updated"``: ``update(inputs, masks) -> new layers``, pruned entries 0.
    """

    name: str
    summary: str
    count: str
    needs: tuple[str, ...] = ()
    scores: Callable[[PruneInputs], list] | None = None
    tie: Callable[[PruneInputs], list] | None = None
    survivors: str = "original"
    update: Callable[[PruneInputs, list], list] | None = None

    def __post_init__(self):
        if self.count not in COUNT_RULES:
            raise ValueError(f"method {self.name!r}: count must be one of {COUNT_RULES}, got {self.count!r}")
        if self.survivors not in SURVIVORS:
            raise ValueError(f"method {self.name!r}: survivors must be one of {SURVIVORS}, got {self.survivors!r}")
        if (self.survivors == "updated") != (self.update is not None):
            raise ValueError(f"method {self.name!r}: an update function goes with survivors='updated'")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown needs {sorted(unknown)} (known: {list(NEEDS)})")

    @property
    def requires(self) -> tuple[str, ...]:
        """:attr:`needs`, plus ``optimized`` where the count is Tropical's."""
        extra = ("optimized",) if self.count in ("intersection", "tropical") else ()
        return tuple(dict.fromkeys(extra + tuple(self.needs)))

    @property
    def calibration(self) -> tuple[str, ...]:
        """The calibration statistics it reads (in :data:`CALIBRATION` order)."""
        return tuple(s for s in CALIBRATION if s in self.requires)

    def ranking(self, inputs: PruneInputs):
        """Its :class:`~adapter_pruning.masks.Ranking` (None for the Tropical rule); does not depend on
        ``p`` or the scope, so a sweep computes it once."""
        from ..masks import Ranking

        if self.count == "intersection":
            return None
        for what in self.requires:
            inputs.need(what, self.name)
        return Ranking(
            scores=None if self.scores is None else self.scores(inputs),
            count=self.count,
            tie=None if self.tie is None else self.tie(inputs),
        )

    def masks(self, inputs: PruneInputs, p: float, scope: str, ranking=None):
        """Its :class:`~adapter_pruning.masks.MethodMasks` at ``p`` in ``scope`` (``ranking``: from
        :meth:`ranking`, computed here when None)."""
        from ..masks import method_masks

        optimized = inputs.need("optimized", self.name) if "optimized" in self.requires else None
        if self.count == "intersection":
            return method_masks(inputs.layers, optimized, p, scope)["tropical"]
        ranking = ranking if ranking is not None else self.ranking(inputs)
        # under a key of its own: "standard" is also a built-in name of method_masks (the same masks)
        return method_masks(inputs.layers, optimized, p, scope, {"method": ranking})["method"]

    def apply(self, inputs: PruneInputs, layer_masks: Sequence) -> list:
        """New layers: ``layer_masks`` applied (real zeros), survivors as :attr:`survivors` says."""
        from ..masks import apply_masks

        if self.survivors == "optimized":
            return apply_masks(
                inputs.layers, layer_masks, values="optimized", optimized=inputs.need("optimized", self.name)
            )
        if self.survivors == "updated":
            return self.update(inputs, layer_masks)
        return apply_masks(inputs.layers, layer_masks)


def _registry() -> dict[str, MaskMethod]:
    from . import activation, magnitude, random_baseline, sparsegpt, taylor, tropical

    out: dict[str, MaskMethod] = {}
    for family in (magnitude, tropical, random_baseline, activation, taylor, sparsegpt):
        for method in family.METHODS:
            if method.name in out:
                raise RuntimeError(f"method {method.name!r} is defined twice")
            out[method.name] = method
    return out


#: Every method by name, family by family (the order of `adapter-prune --help`).
REGISTRY: dict[str, MaskMethod] = _registry()


def names() -> list[str]:
    """The registered method names."""
    return list(REGISTRY)


def get(name: str) -> MaskMethod:
    """The method called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown pruning method {name!r}; known methods: {', '.join(REGISTRY)}") from None


def needs_of(methods: Iterable[str]) -> set[str]:
    """Everything the given methods read besides the adapter (keys of :data:`NEEDS`)."""
    return set(_needs(tuple(methods)))


@functools.cache
def _needs(methods: tuple[str, ...]) -> frozenset[str]:
    # cached: the workflow asks once per prune job (thousands in the paper grid's DAG)
    return frozenset(need for name in methods for need in get(name).requires)


def calibration_needed(methods: Iterable[str]) -> list[str]:
    """The calibration statistics the given methods read, in :data:`CALIBRATION` order."""
    needs = needs_of(methods)
    return [s for s in CALIBRATION if s in needs]
