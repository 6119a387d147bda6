"""The first-step check of the CI regression (issue 17): exact up to rounding, and so sharp.

Every band of :mod:`u2cdr_bench.regress` is as wide as a seed moves a run, because after its first discrete
decision (an Elbow K, a k-means assignment) a run on another CPU diverges like a new seed. Before that
decision the only difference between two machines is floating-point rounding. The first optimisation step of a
run is such a moment for every quantity that no rounding-sensitive decision has touched yet:
:meth:`~u2cdr_bench.methods.common.EncoderMethod.train_stage` records the first
:data:`~u2cdr_bench.methods.common.OPENING_STEPS` steps of a run's first stage unaveraged in
``method_info.opening``, and this module compares **step 0** of it (:func:`first_step_of`: the loss, the
encoder's gradient norm, and each loss term of the step's ``info``) with the reference run of the same config
and seed.

Which quantities are rounding-level is measured, not assumed: ``benchmarks/make_reference.py
--objective-cell`` re-runs the reference cell at the reference seed under several perturbations of the
rounding (the imitated AVX CPU, the unpinned native kernels, two threads instead of one;
:data:`PERTURBATIONS`). With ``ref`` the value of the reference run and ``dev`` the largest
``|perturbed - ref|`` over them,

    tolerance = rel * |ref| + abs_floor                     (FirstStepRule),
    checked   iff  margin * dev <= tolerance,
    fail      iff  checked and |fresh - ref| > tolerance.

A quantity some perturbation moves by more than ``tolerance / margin`` (a k-means assignment done before
step 0 that flipped, e.g. ProtoNCE's prototype term) is recorded with its deviation and left unchecked. With
``rel = 1e-4`` (about 800 float32 ulps) and ``margin = 10``, a checked quantity moved by at most 1e-5 of its
value under every perturbation (measured: at most 7.8e-6), while a 10x temperature moves a checked term of
every family with one by 1.6 to 16,700 tolerances at step 0 (docs/reliability.md, "The first step, exactly").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Rounding perturbations measured at the reference seed, beside the imitated CPUs (name -> environment).
PERTURBATIONS: dict[str, dict[str, str]] = {
    "unpinned": {"U2CDR_REPRO": "native"},
    "threads-2": {"U2CDR_THREADS": "2"},
}


@dataclass(frozen=True)
class FirstStepRule:
    """``tolerance = rel * |ref| + abs_floor``; a quantity is checked iff ``margin * dev <= tolerance``."""

    rel: float = 1e-4
    abs_floor: float = 1e-6
    margin: float = 10.0

    def tolerance(self, ref: float) -> float:
        """The band half-width around the reference value ``ref``."""
        return self.rel * abs(ref) + self.abs_floor

    def as_dict(self) -> dict[str, Any]:
        """The rule as the tolerance file stores it."""
        return {
            "rel": self.rel,
            "abs_floor": self.abs_floor,
            "margin": self.margin,
            "text": "step 0 of method_info.opening, at the reference seed: "
            "tolerance = rel*|ref| + abs_floor; checked iff margin*max|perturbed-ref| <= tolerance; "
            "fail iff |fresh-ref| > tolerance",
        }


FIRST_STEP_RULE = FirstStepRule()


def first_step_of(rec: dict[str, Any]) -> dict[str, float]:
    """``{"objective": ..., "grad_norm": ..., "<stage>/<term>": ...}`` at step 0 of ``method_info.opening``
    (empty for a training-free method or a record written before the opening was recorded)."""
    opening = rec.get("method_info", {}).get("opening") or {}
    if not opening.get("steps"):
        return {}
    first, stage = opening["steps"][0], opening.get("stage", "")
    out = {"objective": float(first["objective"]), "grad_norm": float(first["grad_norm"])}
    out |= {f"{stage}/{term}": float(v) for term, v in first.get("terms", {}).items()}
    return out


def build_first_step(
    reference: dict[str, float],
    seed: int,
    perturbed: dict[str, dict[str, float]],
    rule: FirstStepRule = FIRST_STEP_RULE,
) -> dict[str, Any]:
    """One cell's entry: ``{"seed", "values": {key: {"reference", "perturbed", "deviation", "tolerance",
    "checked"}}}`` from the reference run's :func:`first_step_of` and each perturbation's."""
    values = {}
    for key, ref in sorted(reference.items()):
        moved = {name: v[key] for name, v in sorted(perturbed.items()) if key in v}
        dev = max((abs(v - ref) for v in moved.values()), default=None)  # None: nothing measured
        tol = rule.tolerance(ref)
        values[key] = {
            "reference": ref,
            "perturbed": moved,
            "deviation": dev,
            "tolerance": tol,
            "checked": dev is not None and rule.margin * dev <= tol,
        }
    return {"seed": seed, "values": values}


def first_step_lines(rec: dict[str, Any], cell: str, entry: dict[str, Any]) -> list[str]:
    """Failure lines (without the method prefix) for ``rec`` against its cell's ``entry``; none when the
    record's seed is not the entry's (another seed has another first step)."""
    if int(rec["config"]["seed"]) != int(entry["seed"]):
        return []
    fresh = first_step_of(rec)
    bad = []
    for key, band in entry["values"].items():
        if not band["checked"]:
            continue
        new = fresh.get(key)
        if new is not None and abs(new - band["reference"]) <= band["tolerance"]:
            continue
        shown = "missing" if new is None else f"{new:.7g}"
        bad.append(
            f"first step of {cell}: {key} moved: {shown}, reference {band['reference']:.7g} "
            f"± {band['tolerance']:.2g} (the measured rounding moved it by at most {band['deviation']:.2g})"
        )
    return bad
