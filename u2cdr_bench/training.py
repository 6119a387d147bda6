"""Shared training plumbing: seeding, paired batches, SGD + cosine schedule, batched encoding.

Batches follow UCDIR's paired iteration (paper-spec §7 #11): one epoch has
``ceil(max(N_A, N_B) / B)`` steps; each step draws ``B`` indices from each domain, each domain
reshuffled when exhausted, so the smaller domain is cycled.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.types import UnlabeledDomain


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds legacy global users too
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


class _Cycler:
    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.g = generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.g)
                self.pos = 0
            chunk = self.perm[self.pos : self.pos + k]
            self.pos += len(chunk)
            k -= len(chunk)
            out.append(chunk)
        return torch.cat(out)


def steps_per_epoch(n_a: int, n_b: int, batch_size: int) -> int:
    return max(1, math.ceil(max(n_a, n_b) / batch_size))


class PairedSampler:
    """Yields ``(idx_a [B], idx_b [B])`` index batches; state persists across epochs."""

    def __init__(self, n_a: int, n_b: int, batch_size: int, generator: torch.Generator) -> None:
        self.batch_a = min(batch_size, n_a)
        self.batch_b = min(batch_size, n_b)
        self.a = _Cycler(n_a, generator)
        self.b = _Cycler(n_b, generator)
        self.steps = steps_per_epoch(n_a, n_b, batch_size)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            yield self.a.take(self.batch_a), self.b.take(self.batch_b)


def make_sgd(
    params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4, nesterov: bool = False
) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine annealing from ``base_lr`` at step 0 to 0 at ``total_steps``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


def inverse_lr(base_lr: float, step: int, gamma: float = 1e-4, power: float = 0.75) -> float:
    """Inverse decay ``base_lr * (1 + gamma * step) ** (-power)`` (Caffe's ``inv`` policy).

    PCS-FUDA steps it once per optimiser step with ``gamma = 1e-4``, ``power = 0.75``
    (``pcs/utils/torchutils.py::lr_scheduler_invLR``); tllib's DANN uses the same form.
    """
    return base_lr * (1.0 + gamma * step) ** (-power)


#: Learning-rate schedules of :func:`scheduled_lr` (hyper-parameter ``lr_schedule``).
LR_SCHEDULES = ("cosine", "constant", "inverse")


def scheduled_lr(kind: str, base_lr: float, step: int, total_steps: int, gamma: float = 1e-4) -> float:
    """The learning rate at optimiser step ``step`` of ``total_steps`` under schedule ``kind``.

    ``cosine``: :func:`cosine_lr` (the shared schedule, paper-spec §2.5); ``constant``: ``base_lr``
    (CoDA, CDS: no scheduler is stepped); ``inverse``: :func:`inverse_lr` with ``gamma`` (PCS).
    """
    if kind == "cosine":
        return cosine_lr(base_lr, step, total_steps)
    if kind == "constant":
        return base_lr
    if kind == "inverse":
        return inverse_lr(base_lr, step, gamma)
    raise ValueError(f"unknown lr_schedule {kind!r}; valid: {', '.join(LR_SCHEDULES)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


@torch.no_grad()
def encode_views(
    encoder: nn.Module, domain: UnlabeledDomain, generator: torch.Generator, batch_size: int = 512
) -> torch.Tensor:
    """Normalised eval-mode features ``[N, D]`` of one augmented view of every sample of ``domain``.

    CoDA's official ``recompute_memory`` (``utils/utils.py``) fills the memory this way: the training
    loader's transform (random crop + flip) with the network in ``eval()`` mode.
    """
    was_training = encoder.training
    encoder.eval()
    out = []
    for s in range(0, domain.n, batch_size):
        idx = torch.arange(s, min(s + batch_size, domain.n))
        out.append(F.normalize(encoder(domain.view(idx, generator)), dim=1))
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def encode(
    encoder: nn.Module, domain: UnlabeledDomain, batch_size: int = 512, normalize: bool = True
) -> torch.Tensor:
    """Features of every clean input of ``domain``, ``[N, D]``, in eval mode (BN statistics frozen)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for s in range(0, domain.n, batch_size):
        idx = torch.arange(s, min(s + batch_size, domain.n))
        f = encoder(domain.clean(idx))
        out.append(F.normalize(f, dim=1) if normalize else f)
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0)
