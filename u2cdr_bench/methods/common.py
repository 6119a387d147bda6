"""Shared base for methods that train one encoder on paired mini-batches of the two domains.

It holds what UEM and the baselines have in common so each method file holds only its own losses:

* the encoder (built by ``ctx.encoder_factory``), L2-normalised outputs;
* per-domain memory banks (paper-spec Eq. 5) initialised from the initial model;
* the paired-batch loop with SGD (momentum 0.9) and a cosine learning-rate schedule to 0 per stage
  (paper-spec §2.5, §7 #10), progress reporting and ``--epochs-scale``; a method whose official code
  does otherwise declares ``lr_schedule`` (``constant`` / ``inverse``,
  :func:`~u2cdr_bench.training.scheduled_lr`) and ``nesterov`` in its ``paper`` profile, and its own
  parameter groups (:meth:`EncoderMethod.param_groups`);
* the BatchNorm forward mode of a paired batch (:meth:`EncoderMethod.forward_pair`, hyper-parameter
  ``joint_forward``): one pass over the concatenated domains or one pass per domain, as each method's
  official code does (docs/baselines.md);
* ``embed`` = L2-normalised encoder output of the clean inputs, in eval mode.

Schedules per dataset profile (``SCHEDULES``) keep the comparison fair: every method trains with the
same optimiser, learning rate and batch size on a given profile unless its paper says otherwise.

* ``paper``: the paper's setting (SGD lr 2e-4 cosine, batch 64; paper-spec §2.5) for ResNet-50 finetuning.
* ``digits``: a small CNN trained from scratch on 16×16 digits needs a much larger learning rate
  (0.05) and few epochs; documented in the README.
* ``features``: a fresh MLP head over frozen features (lr 0.01).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import get_total_norm

from ..blocks.memory import MemoryBank
from ..data.types import UnlabeledDomain
from ..training import PairedSampler, encode, encode_views, make_sgd, scheduled_lr, seed_everything, set_lr
from .base import FitContext, Method

#: Steps of the first stage recorded unaveraged in ``method_info.opening`` (the CI regression's first-step
#: check, :mod:`u2cdr_bench.first_step`).
OPENING_STEPS = 3

#: Optimisation settings per dataset profile, shared by every trained method.
SCHEDULES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 2e-4, "batch_size": 64, "weight_decay": 1e-4, "sgd_momentum": 0.9},
    "digits": {"lr": 0.05, "batch_size": 64, "weight_decay": 5e-4, "sgd_momentum": 0.9},
    "features": {
        "lr": 0.01,
        "batch_size": 64,
        "weight_decay": 1e-4,
        "sgd_momentum": 0.9,
        "head": "structure",
    },
}


def build_encoder(factory: Callable[..., nn.Module], head: str | None) -> nn.Module:
    """``factory(head=head)`` when the factory takes a ``head`` (features mode's
    :func:`~u2cdr_bench.nets.make_encoder_factory`), else ``factory()`` (finetune, tests' own factories)."""
    if head is not None:
        import inspect

        params = inspect.signature(factory).parameters
        if "head" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return factory(head=head)
    return factory()


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
        self.encoder: nn.Module = build_encoder(ctx.encoder_factory, self.hp.get("head")).to(ctx.device)
        self._encoder_prepared = False
        self._after_step: list[Callable[[], None]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's own ``fit`` first runs :meth:`prepare_encoder` (once per method object)."""
        super().__init_subclass__(**kwargs)
        fit = cls.__dict__.get("fit")
        if fit is None or getattr(fit, "_prepares_encoder", False):
            return

        @functools.wraps(fit)
        def fit_prepared(self: EncoderMethod, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
            if not self._encoder_prepared:
                self._encoder_prepared = True
                self.prepare_encoder(domain_a, domain_b)
            return fit(self, domain_a, domain_b)

        fit_prepared._prepares_encoder = True  # type: ignore[attr-defined]
        cls.fit = fit_prepared  # type: ignore[method-assign]

    @torch.no_grad()
    def prepare_encoder(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """Data-dependent initialisation of the head before training: features mode's
        :class:`~u2cdr_bench.nets.StructureHead` gets the PCA of the pooled clean inputs of the domains the
        method trains on (:meth:`head_init_domains`; no labels)."""
        head = getattr(self.encoder, "head", None)
        if not hasattr(head, "init_from_data"):
            return
        backbone = self.encoder.backbone
        was_training = backbone.training
        backbone.eval()
        domains = self.head_init_domains(domain_a, domain_b)
        xs = [backbone(d.clean(torch.arange(d.n)).to(self.ctx.device)) for d in domains]
        backbone.train(was_training)
        head.init_from_data(torch.cat(xs).cpu())

    def head_init_domains(
        self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain
    ) -> tuple[UnlabeledDomain, ...]:
        """The domains whose inputs initialise the head: both, unless a method trains on one only."""
        return (domain_a, domain_b)

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

    def encode_views(self, domain: UnlabeledDomain, module: nn.Module | None = None) -> torch.Tensor:
        """Normalised eval-mode features ``[N, D]`` of one augmented view per sample (method's generator)."""
        return encode_views(module or self.encoder, domain, self.generator)

    def init_memory(self, domain: UnlabeledDomain, momentum: float, source: str = "clean") -> MemoryBank:
        """Memory bank initialised with the current model's features (paper-spec §2.2(a)) of the clean
        inputs (``source="clean"``) or of one augmented view each (``"view"``, CoDA's official init)."""
        if source not in ("clean", "view"):
            from ..errors import UserError

            raise UserError(
                f"Memory initialisation of method {self.name} must be 'clean' or 'view', got {source!r}."
            )
        feats = self.encode_all(domain) if source == "clean" else self.encode_views(domain)
        return MemoryBank(feats, momentum=momentum)

    def forward_pair(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features ``[B_A, D]``, ``[B_B, D]`` of a paired batch.

        ``joint_forward=True`` (the default): one encoder pass over the concatenation, so BatchNorm
        normalises the training batch with statistics of both domains (as its eval-mode running statistics
        do); ``False``: one pass per domain, each domain normalised by its own batch statistics.
        """
        if self.hp.get("joint_forward", True):
            f = self.features(torch.cat([xa, xb]))
            return f[: len(xa)], f[len(xa) :]
        return self.features(xa), self.features(xb)

    def param_groups(self) -> list[dict[str, Any]]:
        """SGD parameter groups of the encoder (default: one group, the shared lr and weight decay).

        A group may carry ``lr_mult`` (its lr is the scheduled lr times ``lr_mult``) and ``weight_decay``.
        """
        return [{"params": list(self.encoder.parameters())}]

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        return self.encode_all(domain).numpy().astype(np.float32, copy=True)

    # ----- the loop ---------------------------------------------------------------------------
    def after_step(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the current step's backward pass and optimiser step are done (outside
        :meth:`train_stage`: at once).

        For memory-bank updates that the step's loss must not see: the loss reads the bank as it is and the
        update waits, which gives the numbers of snapshotting the bank (``bank.clone()``) and updating it in
        place before the backward pass, without the copy.
        """
        if self._after_step is None:
            fn()
        else:
            self._after_step.append(fn)

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

        One SGD optimiser (``lr``, ``sgd_momentum``, ``weight_decay`` and, when the method declares them,
        ``nesterov`` from the hyper-parameters) over ``params`` (default: :meth:`param_groups`) plus
        ``extra_param_groups``. The learning rate follows ``lr_schedule`` (default ``cosine``, annealed to 0
        over the stage; ``constant``; ``inverse`` with ``lr_decay_gamma``) per step.

        The mean of ``loss`` over each epoch's steps is appended to ``self.info["objective"][stage]`` (one
        float per epoch, a list per stage; a stage trained twice appends): the record's trace of the
        objective the optimiser saw, which the CI regression compares per cell (``u2cdr_bench/regress.py``).
        Beside it, ``self.info["grad_norm"][stage]`` holds per epoch the mean over steps of the L2 norm of the
        encoder's gradient after ``backward`` (``torch.nn.utils.get_total_norm`` over the encoder's trainable
        parameters; a discriminator or classifier of ``extra_param_groups`` is left out): a 10x temperature
        scales a contrastive gradient by 1/10 while its loss stays near ``log N``. Reading both costs one
        ``float`` each per step and one norm over the encoder's gradients; it changes no number.
        ``self.info["terms"][stage][key]`` holds per epoch the mean over steps of each entry of ``step``'s
        ``info`` (its loss terms, e.g. UEM's ``ince_a``), a list per key over the epochs the key appeared in:
        one term of a sum can see a temperature that the sum and the gradient drown (issue 17).
        ``self.info["opening"]`` holds the first :data:`OPENING_STEPS` steps of the run's first stage,
        unaveraged (``{"stage", "steps": [{"objective", "grad_norm", "terms": {key: value}}, ...]}``): before
        the run's first discrete decision can diverge between CPUs, they differ between machines by rounding
        only, so the CI regression compares step 0 with the reference run of the same seed at a rounding-sized
        tolerance (:mod:`u2cdr_bench.first_step`).
        """
        hp = self.hp
        groups: list[dict[str, Any]] = (
            [{"params": list(params)}] if params is not None else self.param_groups()
        )
        groups += extra_param_groups or []
        groups = [g for g in groups if len(g["params"])]
        trained = [p for p in self.encoder.parameters() if p.requires_grad]
        opt = make_sgd(
            groups,
            lr=hp["lr"],
            momentum=hp["sgd_momentum"],
            weight_decay=hp["weight_decay"],
            nesterov=bool(hp.get("nesterov", False)),
        )
        schedule = str(hp.get("lr_schedule", "cosine"))
        gamma = float(hp.get("lr_decay_gamma", 1e-4))
        sampler = PairedSampler(domain_a.n, domain_b.n, int(hp["batch_size"]), self.generator)
        total = epochs * sampler.steps
        it = 0
        self.encoder.train()
        opening = None
        if "opening" not in self.info:
            opening = {"stage": stage, "steps": []}
            self.info["opening"] = opening
        pending: list[Callable[[], None]] = []
        self._after_step = pending
        try:
            for epoch in range(epochs):
                if on_epoch_start is not None:
                    on_epoch_start(epoch)
                running: dict[str, float] = {}
                objective = grad_norm = 0.0
                for idx_a, idx_b in sampler.epoch():
                    set_lr(opt, scheduled_lr(schedule, hp["lr"], it, total, gamma))
                    loss, info = step(epoch, idx_a, idx_b)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    grads = [q.grad for q in trained if q.grad is not None]
                    norm = float(get_total_norm(grads)) if grads else 0.0
                    grad_norm += norm / sampler.steps
                    opt.step()
                    value = float(loss.detach())
                    objective += value / sampler.steps
                    if opening is not None and it < OPENING_STEPS:
                        terms = {k: float(v) for k, v in info.items()}
                        opening["steps"].append({"objective": value, "grad_norm": norm, "terms": terms})
                    for fn in pending:
                        fn()
                    pending.clear()
                    it += 1
                    for k, v in info.items():
                        running[k] = running.get(k, 0.0) + float(v) / sampler.steps
                trace = self.info.setdefault("objective", {}).setdefault(stage, [])
                trace.append(round(objective, 6))
                norms = self.info.setdefault("grad_norm", {}).setdefault(stage, [])
                norms.append(round(grad_norm, 6))
                terms = self.info.setdefault("terms", {}).setdefault(stage, {})
                for k, v in running.items():
                    terms.setdefault(k, []).append(round(v, 6))
                if not (np.isfinite(objective) and all(np.isfinite(v) for v in running.values())):
                    raise FloatingPointError(
                        f"{self.name} {stage}: loss is not finite at epoch {epoch + 1}: {running}"
                    )
                self.ctx.progress(stage, epoch + 1, epochs, running)
        finally:
            self._after_step = None
