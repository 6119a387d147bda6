"""Baseline ``source-only``: instance discrimination on the query domain alone.

Papers: Z. Wu, Y. Xiong, S. X. Yu, D. Lin, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", CVPR 2018 (InstDisc: memory bank, Eq. 2-3 there); K. He, H. Fan, Y. Wu, S. Xie,
R. Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020 (MoCo).

Loss (InstDisc Eq. 2 with the full memory as negatives; paper-spec Eq. 6 in its "bank" reading), for a
batch of augmented views ``x_i`` of the **query domain A** only:

.. math:: \\mathcal L = \\frac1B \\sum_i -\\log \\frac{\\exp(f(x_i)\\cdot m_i/\\tau)}
          {\\sum_{j=1}^{N^A}\\exp(f(x_i)\\cdot m_j/\\tau)}, \\qquad \\tau = 0.07,

and after each step ``m_i <- normalise(0.5 m_i + 0.5 f(x_i))`` (InstDisc's memory momentum 0.5).
The memory is initialised with the features of the untrained encoder (paper-spec §2.2(a)).

This is the "no adaptation" reference of the domain-adaptation literature: the gallery domain B is
never forwarded (not even through BatchNorm, the pitfall of PCS-FUDA issue #2), so the learned features
are a function of A alone. Retrieval and the open-set detector use cosine distance (InstDisc / MoCo
retrieve by cosine similarity; on unit-norm features it ranks as the Euclidean distance does).

Deviations: MoCo's momentum encoder and queue are replaced by InstDisc's memory bank, the shared
block every method of this toolkit uses; the learning-rate schedule and batch size are the profile's
(``SCHEDULES``), the epochs those of InstDisc/MoCo (200) for ``paper``.
Views: one default augmented view per sample and step; the clean inputs for the memory init and ``embed``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from u2cdr_bench.blocks.losses import instance_nce
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Choice, Space


@register_method
class SourceOnly(EncoderMethod):
    """Memory-bank instance discrimination trained on the query domain only (domain B is ignored)."""

    name = "source-only"
    summary = "Instance discrimination (memory bank, InstDisc/MoCo) on the query domain alone; B unused."
    citation = (
        "Wu, Xiong, Yu, Lin. Unsupervised Feature Learning via Non-Parametric Instance Discrimination. "
        "CVPR 2018; He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation "
        "Learning. CVPR 2020"
    )
    distance = "cosine"
    needs_num_classes = False
    hparam_space: ClassVar[dict[str, Space]] = {"negatives": Choice("bank", "batch")}
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "tau": 0.07,
        "memory_momentum": 0.5,
        "negatives": "bank",
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "digits": {"epochs": 24},
        "features": {"epochs": 30},
    }

    def head_init_domains(
        self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain
    ) -> tuple[UnlabeledDomain, ...]:
        """The head's PCA start sees the query domain only: B stays unused."""
        return (domain_a,)

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        hp = self.hp
        bank = self.init_memory(domain_a, hp["memory_momentum"])
        epochs = self.epochs(hp["epochs"])
        self.info.update({"epochs": epochs, "domains_trained": [domain_a.name]})

        def step(
            epoch: int, idx_a: torch.Tensor, _unused: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            f = self.features(self.view(domain_a, idx_a))
            # the loss keeps a snapshot of the memory: the in-place update below must not touch the graph
            loss = instance_nce(f, bank.bank.clone(), idx_a, tau=hp["tau"], negatives=hp["negatives"])
            bank.update(idx_a, f.detach())
            return loss, {"loss": float(loss.detach())}

        # Both sides of the paired sampler draw from A, so neither B's size nor its content can reach
        # the random stream, the batches or the BatchNorm statistics.
        self.train_stage("instance", domain_a, domain_a, epochs, step)
