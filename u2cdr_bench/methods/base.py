"""The method interface every retrieval method implements (UEM and all baselines).

A method is built with a :class:`FitContext` (seed, schedule scale, how to build its trainable
encoder, optional class-count hint) and its hyper-parameters, then

1. ``fit(domain_a, domain_b)`` trains on the two **unlabeled** domains (A = query, B = gallery);
2. ``embed(domain)`` returns ``[N, D]`` float32 retrieval features of the clean inputs;
3. ``detect_private(query_feats, gallery_feats)`` flags open-set queries whose class has no match in
   the gallery (paper-spec §2.6 for UEM; the generic detector of paper-spec §4.2 for every other method).

Retrieval ranks the gallery by the Euclidean distance between these features (paper-spec §2.4, §7 #12).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.types import UnlabeledDomain
from .hparams import SHARED, Space, check_value

ProgressFn = Callable[[str, int, int, dict[str, float]], None]

#: Hyper-parameters every method has. ``detector_threshold`` picks the per-cluster threshold D_c of the
#: generic open-set detector (paper-spec §4.2, §7 #19): ``radius`` (largest member-to-centroid distance,
#: default) or ``diameter`` (largest distance between two members, the most literal reading of App. B.2).
#: The literal reading almost never flags a query (on digits, 0.0 % of the private queries with raw pixels,
#: against 38 % with ``radius``), so it cannot produce the paper's 58–85 % baseline accuracies; ``radius``
#: reads "max intra-cluster distance" as the distance of members to their cluster centre.
#: ``detector_k`` names the cluster-count estimator of the detector's query clustering
#: (:mod:`u2cdr_bench.blocks.cluster_count`) and ``detector_k_max`` its upper bound, which is no longer a
#: cap of 20 below Office-31's 31 and Office-Home's 65 classes (issue 11 item 9).
BASE_HPARAMS: dict[str, Any] = {"detector_threshold": "radius", "detector_k": "elbow", "detector_k_max": 100}

#: The view sets of features mode (u2cdr_bench.features): ``clean`` (the evaluation transform), ``aug``
#: (MoCo v2 aug-plus), ``strong`` (DN2A's strong views), ``fourier`` and ``phase`` (DGDIR's).
VIEW_SETS: tuple[str, ...] = ("clean", "aug", "strong", "fourier", "phase")

#: The official per-dataset configurations a dataset can name (``DatasetSpec.method_profile``): the datasets
#: of the baselines' released scripts. A method keys its per-dataset values on these names
#: (:attr:`Method.dataset_profiles`); docs/baselines.md says which official file each value comes from.
METHOD_PROFILES: tuple[str, ...] = ("office31", "officehome", "domainnet")

#: Hyper-parameters that make up a training *schedule* (optimiser, learning rate and its decay, batch,
#: length). Outside the ``paper`` profile (a fresh head on frozen features, or the small CNN of digits) every
#: method keeps the one shared schedule of its profile (``SCHEDULES`` in :mod:`.common`), so per-dataset
#: official values of these keys apply in the ``paper`` profile only (docs/baselines.md, "The rule").
SCHEDULE_KEYS: frozenset[str] = frozenset(
    {
        "lr",
        "batch_size",
        "weight_decay",
        "sgd_momentum",
        "nesterov",
        "lr_schedule",
        "lr_decay_gamma",
        "epochs",
    }
)


def _no_progress(stage: str, step: int, total: int, info: dict[str, float]) -> None:
    return None


@dataclass
class FitContext:
    """Everything a method needs besides the data.

    Attributes:
        seed: run seed; a method must be a pure function of (data, hparams, seed).
        epochs_scale: multiplies every stage's epoch count (``--epochs-scale``); see :meth:`Method.epochs`.
        encoder_factory: builds a fresh trainable encoder ``input -> [B, feat_dim]`` (small CNN + head for
            digits, MLP head over cached features, or backbone + head in finetune mode).
        input_kind: ``"image"`` or ``"features"``.
        input_shape: shape of one input sample.
        profile: hyper-parameter profile of the dataset (``digits``, ``paper``, ``features``).
        method_profile: the official per-dataset configuration the dataset names (one of
            :data:`METHOD_PROFILES`, ``DatasetSpec.method_profile``), or ``None`` (the methods' defaults).
        num_classes: true class counts ``(C_A, C_B)``, given only to methods with ``needs_num_classes``
            (the paper gave PCS, UCDIR and DGDIR the true class number, paper-spec §3); else ``None``.
        device: torch device.
        progress: callback ``(stage, step, total, info)`` for a progress display.
    """

    seed: int
    encoder_factory: Callable[[], nn.Module]
    input_kind: str
    input_shape: tuple[int, ...]
    epochs_scale: float = 1.0
    profile: str = "paper"
    method_profile: str | None = None
    num_classes: tuple[int, int] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressFn = _no_progress


class Method(ABC):
    """Base class of every method. Subclasses set the class attributes and implement :meth:`fit`.

    Class attributes:
        name: registry name.
        summary: one line for ``list methods``.
        citation: the method's paper.
        needs_num_classes: whether the method consumes the true class count (recorded in every record).
        distance: the method's own distance for the generic open-set detector (``euclidean`` or ``cosine``).
        generic_detector: whether the method flags open-set queries with the generic detector of App. B.2
            and so reads ``detector_threshold`` (UEM has its own detector and does not have the key).
        views: the input views the method reads in features mode (:data:`VIEW_SETS`); only these are
            extracted. ``clean`` only for ``pretrained``; trained methods add ``aug``.
        defaults: default hyper-parameters; ``profiles`` maps a dataset profile to overrides.
        hparam_space: the range or choices of each of the method's own keys
            (:mod:`u2cdr_bench.methods.hparams`; shared keys are declared in ``hparams.SHARED``).
        dataset_profiles: official per-dataset values, keyed by :data:`METHOD_PROFILES`; applied after the
            profile's overrides (schedule keys, :data:`SCHEDULE_KEYS` and ``schedule_keys``, only in the
            ``paper`` profile), before the user's (:meth:`hparams_for`).
        schedule_keys: the method's own schedule-like keys (e.g. warm-up epochs) treated as
            :data:`SCHEDULE_KEYS`.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    needs_num_classes: ClassVar[bool] = False
    distance: ClassVar[str] = "euclidean"
    generic_detector: ClassVar[bool] = True
    views: ClassVar[tuple[str, ...]] = ("clean",)
    defaults: ClassVar[dict[str, Any]] = {}
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    hparam_space: ClassVar[dict[str, Space]] = {}
    dataset_profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    schedule_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, ctx: FitContext, hparams: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.hp = self.hparams_for(ctx.profile, ctx.method_profile, hparams)
        self.info: dict[str, Any] = {}  # facts for the record (e.g. estimated cluster counts)
        if ctx.method_profile in self.dataset_profiles:
            self.info["method_profile"] = ctx.method_profile

    @classmethod
    def dataset_overrides(cls, profile: str, method_profile: str | None) -> dict[str, Any]:
        """The official per-dataset values of ``method_profile`` that apply under ``profile``.

        ``paper`` (finetuning, the paper's regime): all of them. Any other profile (a fresh head on frozen
        features, the from-scratch CNN of digits): all but the schedule keys (:data:`SCHEDULE_KEYS`,
        ``schedule_keys``), i.e. the method's relative settings (loss weights, temperatures, cluster
        counts, learning-rate ratios between its parts) on the profile's shared schedule.
        """
        table = cls.dataset_profiles.get(method_profile or "", {})
        if profile == "paper":
            return dict(table)
        skip = SCHEDULE_KEYS | cls.schedule_keys
        return {k: v for k, v in table.items() if k not in skip}

    @classmethod
    def hparams_for(
        cls, profile: str, method_profile: str | None = None, overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resolved hyper-parameters: defaults, the profile's, the dataset's official ones
        (:meth:`dataset_overrides`), then the user's (``overrides`` win; unknown keys are an error)."""
        merged = cls.dataset_overrides(profile, method_profile)
        merged.update(overrides or {})
        return cls.resolve_hparams(profile, merged)

    @classmethod
    def base_hparams(cls, profile: str) -> dict[str, Any]:
        """The keys every method of this kind has before its own ``defaults`` (here: the detector's)."""
        return dict(BASE_HPARAMS) if cls.generic_detector else {}

    @classmethod
    def space(cls) -> dict[str, Space]:
        """The declared space of every key: :data:`hparams.SHARED`, then ``hparam_space`` along the MRO."""
        out: dict[str, Space] = dict(SHARED)
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("hparam_space", {}))
        return out

    @classmethod
    def resolve_hparams(cls, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Base keys, then ``defaults``, the profile's overrides and the user's (each checked).

        Raises:
            UserError: an override names a key the method does not have (listing the valid keys), or its
                value is outside the key's declared type and range or choices (:mod:`hparams`), or the
                result breaks a cross-key rule of :meth:`check_hparams`.
        """
        hp = cls.base_hparams(profile)
        hp.update(cls.defaults)
        hp.update(cls.profiles.get(profile, {}))
        space = cls.space()
        for key, value in (overrides or {}).items():
            if key not in hp:
                from ..errors import UserError, unknown_name

                if key in BASE_HPARAMS:
                    raise UserError(
                        f"Method {cls.name} has its own open-set detector and does not read {key}; "
                        f"valid hyper-parameters: {', '.join(sorted(hp))}."
                    )
                raise unknown_name(f"hyper-parameter of method {cls.name}", key, hp)
            check_value(cls.name, key, value, space.get(key), hp[key])
            hp[key] = value
        cls.check_hparams(hp)
        return hp

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        """Cross-key rules of the resolved hyper-parameters (raise ``UserError``); none by default."""
        return None

    def epochs(self, base: int) -> int:
        """``base`` epochs scaled by ``--epochs-scale`` (at least 1)."""
        return max(1, int(round(base * self.ctx.epochs_scale)))

    @abstractmethod
    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """Train on two unlabeled domains (A = query domain, B = gallery domain)."""

    @abstractmethod
    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        """``[N, D]`` float32 retrieval features of ``domain``'s clean inputs."""

    def detect_private(self, query_feats: np.ndarray, gallery_feats: np.ndarray) -> np.ndarray:
        """``[N_q]`` bool: True where a query is judged query-private (open-set, paper-spec §4.2).

        The default is the generic detector of the paper's App. B.2 in the method's own distance.
        """
        from ..blocks.detector import generic_private_detector

        return generic_private_detector(
            query_feats,
            gallery_feats,
            distance=self.distance,
            seed=self.ctx.seed,
            threshold=self.hp.get("detector_threshold", "radius"),
            estimator=self.hp.get("detector_k", "elbow"),
            k_max=int(self.hp.get("detector_k_max", 100)),
        )
