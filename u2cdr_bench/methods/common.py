"""Shared base for methods that train one encoder on paired mini-batches of the two domains.

It holds what UEM and the baselines have in common so each method file holds only its own losses:

* the encoder (built by ``ctx.encoder_factory``), L2-normalised outputs;
* per-domain memory banks (paper-spec Eq. 5) initialised from the initial model;
* the paired-batch loop with SGD (momentum 0.9) and a cosine learning-rate schedule to 0 per stage
  (paper-spec §2.5, §7 #10), progress reporting and ``--epochs-scale``;
* ``embed`` = L2-normalised encoder output of the clean inputs, in eval mode.

Schedules per dataset profile (``SCHEDULES``) keep the comparison fair: every method trains with the
same optimiser, learning rate and batch size on a given profile unless its paper says otherwise.

* ``paper``: the paper's setting (SGD lr 2e-4 cosine, batch 64; paper-spec §2.5) for ResNet-50 finetuning.
* ``digits``: a small CNN trained from scratch on 16×16 digits needs a much larger learning rate
  (0.05) and few epochs; documented in the README.
* ``features``: a fresh MLP head over frozen features (lr 0.01).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.memory import MemoryBank
from ..data.types import UnlabeledDomain
from ..training import PairedSampler, cosine_lr, encode, make_sgd, seed_everything, set_lr
from .base import FitContext, Method

#: Optimisation settings per dataset profile, shared by every trained method.
SCHEDULES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 2e-4, "batch_size": 64, "weight_decay": 1e-4, "sgd_momentum": 0.9},
    "digits": {"lr": 0.05, "batch_size": 64, "weight_decay": 5e-4, "sgd_momentum": 0.9},
    "features": {"lr": 0.01, "batch_size": 64, "weight_decay": 1e-4, "sgd_momentum": 0.9},
}

StepFn = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


class EncoderMethod(Method):
    """Base of every trained method: subclasses implement :meth:`fit` with :meth:`train_stage`."""

    defaults: ClassVar[dict[str, Any]] = {}
    views: ClassVar[tuple[str, ...]] = ("clean", "aug")

    @classmethod
    def base_hparams(cls, profile: str) -> dict[str, Any]:
        """The detector's key (when used), then the profile's optimiser settings (:data:`SCHEDULES`)."""
        hp = super().base_hparams(profile)
        hp.update(SCHEDULES.get(profile, SCHEDULES["paper"]))
        return hp

    def __init__(self, ctx: FitContext, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, hparams)
        self.generator = seed_everything(ctx.seed)
        self.encoder: nn.Module = ctx.encoder_factory().to(ctx.device)

    # ----- features -------------------------------------------------------------------------
    def features(self, x: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        """L2-normalised features ``[B, D]`` of a batch (training mode, with gradient)."""
        return F.normalize((module or self.encoder)(x.to(self.ctx.device)), dim=1)

    def view(self, domain: UnlabeledDomain, idx: torch.Tensor, strength: str = "default") -> torch.Tensor:
        """One augmented view of samples ``idx`` of ``domain``, drawn with the method's generator."""
        return domain.view(idx, self.generator, strength)

    def encode_all(self, domain: UnlabeledDomain, module: nn.Module | None = None) -> torch.Tensor:
        """Normalised features of every clean input of ``domain`` (eval mode, no gradient), ``[N, D]``."""
        return encode(module or self.encoder, domain)

    def init_memory(self, domain: UnlabeledDomain, momentum: float) -> MemoryBank:
        """Memory bank initialised with the current model's features (paper-spec §2.2(a))."""
        return MemoryBank(self.encode_all(domain), momentum=momentum)

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        return self.encode_all(domain).numpy().astype(np.float32, copy=True)

    # ----- the loop ---------------------------------------------------------------------------
    def train_stage(
        self,
        stage: str,
        domain_a: UnlabeledDomain,
        domain_b: UnlabeledDomain,
        epochs: int,
        step: StepFn,
        params: Iterable[nn.Parameter] | None = None,
        on_epoch_start: Callable[[int], None] | None = None,
        extra_param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        """Run ``epochs`` epochs of paired batches; ``step(epoch, idx_a, idx_b) -> (loss, info)``.

        One SGD optimiser (``lr``, ``sgd_momentum``, ``weight_decay`` from the hyper-parameters) over
        ``params`` (default: the encoder's) plus ``extra_param_groups``, cosine-annealed to 0 over the stage.
        """
        hp = self.hp
        groups: list[dict[str, Any]] = [
            {"params": list(params if params is not None else self.encoder.parameters())}
        ]
        groups += extra_param_groups or []
        opt = make_sgd(groups, lr=hp["lr"], momentum=hp["sgd_momentum"], weight_decay=hp["weight_decay"])
        sampler = PairedSampler(domain_a.n, domain_b.n, int(hp["batch_size"]), self.generator)
        total = epochs * sampler.steps
        it = 0
        self.encoder.train()
        for epoch in range(epochs):
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            running: dict[str, float] = {}
            for idx_a, idx_b in sampler.epoch():
                set_lr(opt, cosine_lr(hp["lr"], it, total))
                loss, info = step(epoch, idx_a, idx_b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                it += 1
                for k, v in info.items():
                    running[k] = running.get(k, 0.0) + float(v) / sampler.steps
            if not all(np.isfinite(v) for v in running.values()):
                raise FloatingPointError(
                    f"{self.name} {stage}: loss is not finite at epoch {epoch + 1}: {running}"
                )
            self.ctx.progress(stage, epoch + 1, epochs, running)
