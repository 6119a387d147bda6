"""Declared hyper-parameter spaces: every key of every method has a type and a range or a set of choices.

A method declares its hyper-parameters in two class attributes side by side:

* ``defaults`` (and ``profiles``): the values. The **type** of a key is inferred from its default
  (``bool``, ``int``, ``float``, ``str``, ``list`` of numbers), so the value dicts stay as they are;
* ``hparam_space``: ``{key: Range(...) | Choice(...) | Items(...)}`` for the keys that are the method's own.
  Keys many methods share (``lr``, ``batch_size``, ``tau``, ``epochs``, ``memory_momentum`` ...) are declared
  once in :data:`SHARED`; ``bool`` keys need no entry (their choices are ``True``/``False``).

Spaces merge along the class hierarchy (a subclass entry overrides its parent's, which overrides
:data:`SHARED`). :meth:`u2cdr_bench.methods.base.Method.resolve_hparams` checks every ``--hp`` override
against its key's space before any work starts (``plan``) and raises :class:`~u2cdr_bench.errors.UserError`
with one sentence, e.g. ``Hyper-parameter lr of method uem must be a number >= 0, got -1.``; a key the method
does not have (does not read) is an error listing the valid keys. Cross-key rules (UEM's ``elbow_k_max >=
elbow_k_min``) live in the method's ``check_hparams`` classmethod.

Values come from YAML (``--hp lr=1e-3`` gives a float, ``--hp use_sel=false`` a bool, ``--hp k=[1,2]`` a
list). An ``int`` key rejects ``2.5`` and ``true``; a ``float`` key accepts integers; NaN and infinity are
rejected everywhere. Assumption: a default of ``None`` has no inferable type, so such keys declare one
(``Items(..., nullable=True)`` for ProtoNCE's ``num_clusters``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

__all__ = ["SHARED", "Choice", "Items", "Range", "Space", "check_value", "describe", "infer_type"]


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``; ``open_low`` / ``open_high`` exclude an end; ``None`` = unbounded.

    ``kind`` forces ``int`` or ``float``; by default it is inferred from the key's default value.
    """

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    kind: type | None = None
    nullable: bool = False

    def contains(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.open_low and x == self.low)):
            return False
        return not (self.high is not None and (x > self.high or (self.open_high and x == self.high)))

    def text(self) -> str:
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.open_low else '['}{_num(lo)}, {_num(hi)}{')' if self.open_high else ']'}"
        if lo is not None:
            return f"{'>' if self.open_low else '>='} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.open_high else '<='} {_num(hi)}"
        return "finite"


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    values: tuple[Any, ...]
    nullable: bool = False

    def __init__(self, *values: Any, nullable: bool = False) -> None:
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "nullable", nullable)


@dataclass(frozen=True)
class Items:
    """A non-empty list whose every item lies in ``item`` (a :class:`Range`); ``nullable`` allows ``None``."""

    item: Range
    nullable: bool = False


Space = Range | Choice | Items

#: Keys several methods share, declared once. A method's own ``hparam_space`` entry overrides these.
SHARED: dict[str, Space] = {
    # optimiser (methods.common.SCHEDULES)
    "lr": Range(0),  # 0 freezes the weights (a diagnosis), a negative lr is an error
    "batch_size": Range(2),  # BatchNorm needs two samples per batch
    "weight_decay": Range(0),
    "sgd_momentum": Range(0, 1, open_high=True),
    "lr_schedule": Choice("cosine", "constant", "inverse"),  # training.LR_SCHEDULES
    "lr_decay_gamma": Range(0),
    "head_lr_mult": Range(0),
    "backbone_lr_mult": Range(0),
    # the trainable head over frozen features (nets.FEATURE_HEADS; features profile only)
    "head": Choice("structure", "random"),
    # schedule, in epochs
    "epochs": Range(1),
    "warmup_epoch": Range(0),
    "warmup_epochs": Range(0),
    "nn_warmup": Range(0),
    # contrastive learning
    "tau": Range(0, open_low=True),
    "memory_momentum": Range(0, 1, open_high=True),
    "moco_m": Range(0, 1, open_high=True),
    # clustering (faiss k-means, the Elbow)
    "kmeans_niter": Range(1),
    "kmeans_nredo": Range(1),
    "elbow_k_max": Range(2),
    # domain classifier
    "disc_hidden": Range(1),
    # the generic open-set detector (paper-spec §4.2, §7 #19; methods.base.BASE_HPARAMS)
    "detector_threshold": Choice("radius", "diameter"),
    "detector_k": Choice("elbow", "eigengap", "gap", "silhouette"),  # blocks.cluster_count.ESTIMATORS
    "detector_k_max": Range(2),
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def infer_type(default: Any) -> type | None:
    """``bool``, ``int``, ``float``, ``str`` or ``list`` from a default value (``None`` -> ``None``)."""
    for t in (bool, int, float, str, list):
        if isinstance(default, t):
            return t
    return None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def describe(space: Space | None, kind: type | None) -> str:
    """What a valid value is, as a phrase: ``an integer >= 1``, ``one of mean, sum``, ``true or false``."""
    null = " (or null)" if getattr(space, "nullable", False) else ""
    if kind is bool or (isinstance(space, Choice) and set(space.values) == {True, False}):
        return "true or false"
    if isinstance(space, Choice):
        return "one of " + ", ".join(str(v) for v in space.values) + null
    if isinstance(space, Items):
        return f"a non-empty list of {_noun(space.item)}{null}"
    if isinstance(space, Range):
        k = space.kind or kind
        noun = "an integer" if k is int else "a number"
        rng = space.text()
        return f"{noun} {rng}{null}" if rng != "finite" else f"a finite {noun[2:].strip()}{null}"
    return {int: "an integer", float: "a number", str: "a string", list: "a list"}.get(kind, "a value")


def _noun(r: Range) -> str:
    k = r.kind or int
    noun = "integers" if k is int else "numbers"
    rng = r.text()
    return noun if rng == "finite" else f"{noun} {rng}"


def _fits(value: Any, space: Space | None, kind: type | None) -> bool:
    if value is None:
        return bool(getattr(space, "nullable", False))
    if kind is bool or (isinstance(space, Choice) and set(space.values) == {True, False}):
        return isinstance(value, bool)
    if isinstance(space, Choice):
        return any(value == v and type(value) is type(v) for v in space.values)
    if isinstance(space, Items):
        return (
            isinstance(value, list)
            and len(value) > 0
            and all(_fits(v, space.item, space.item.kind or int) for v in value)
        )
    k = (space.kind if isinstance(space, Range) else None) or kind
    if k is int:
        if not _is_int(value):
            return False
    elif k is float or (k is None and isinstance(space, Range)):
        if not _is_number(value):
            return False
    elif k is str:
        return isinstance(value, str)
    elif k is list:
        return isinstance(value, list)
    if isinstance(space, Range):
        return space.contains(value)
    return True


def check_value(method: str, key: str, value: Any, space: Space | None, default: Any) -> None:
    """Raise :class:`UserError` (one sentence) when ``value`` is not a valid value of ``key``."""
    kind = space.kind if isinstance(space, Range) and space.kind is not None else infer_type(default)
    if not _fits(value, space, kind):
        shown = "null" if value is None else repr(value)
        raise UserError(
            f"Hyper-parameter {key} of method {method} must be {describe(space, kind)}, got {shown}."
        )


def check_declared(method: str, hp: Mapping[str, Any], space: Mapping[str, Space]) -> list[str]:
    """Keys of ``hp`` without a declared range or choices (``bool`` keys count as declared); for tests."""
    out = []
    for key, value in hp.items():
        if key in space or isinstance(value, bool):
            continue
        out.append(f"{method}.{key}")
    return out
