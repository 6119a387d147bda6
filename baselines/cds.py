"""Baseline ``cds``: in-domain instance discrimination + cross-domain matching (entropy minimisation).

Paper: D. Kim, K. Saito, T.-H. Oh, B. A. Plummer, S. Sclaroff, K. Saenko, "CDS: Cross-Domain
Self-Supervised Pre-Training", ICCV 2021 (official code: VisionLearningGroup/CDS,
``CDS_pretraining/custom_function/selfsup.py``, ``lib/LinearAverage_2.py``).

Losses for a paired batch (``f`` are L2-normalised features of one augmented view; ``M^A``, ``M^B`` the
per-domain memory banks, one unit-norm slot per sample):

* **In-domain instance discrimination** (CDS Eq. 1-2): per domain, the softmax over the domain's whole
  memory, :math:`P_{i,j} = \\exp(f_i\\cdot m_j/\\tau) / \\sum_k \\exp(f_i\\cdot m_k/\\tau)`, and
  :math:`\\mathcal L_{ID} = \\frac12(\\mathcal L^A_{ID} + \\mathcal L^B_{ID})` with
  :math:`\\mathcal L^X_{ID} = -\\frac1B\\sum_i \\log P_{i,i}` (the code averages the two domains).
* **Cross-domain matching** (CDS Eq. 3-4): the similarity distribution of each sample over the *other*
  domain's memory, restricted as in the official code to its ``k = 700`` most similar entries,

  .. math:: p'_{i,j} = \\frac{\\exp(f_i\\cdot m^{\\bar X}_j/\\tau)}{\\sum_{j'\\in\\mathrm{top}_k(i)}
            \\exp(f_i\\cdot m^{\\bar X}_{j'}/\\tau)},\\qquad
            H^{X\\to\\bar X} = -\\frac1B\\sum_i\\sum_{j\\in\\mathrm{top}_k(i)}
            p'_{i,j}\\log(p'_{i,j}+\\epsilon),

  with ``epsilon = 1e-5`` (the code's). Minimising the entropy pulls every sample towards a few
  confident matches in the other domain (domain-invariant, class-discriminative features).
  :math:`\\mathcal L_{CDM} = \\lambda (H^{A\\to B} + H^{B\\to A})`, ``lambda = 1`` (the code sums the two
  directions into the total loss).

Total: :math:`\\mathcal L = \\mathcal L_{ID} + \\mathcal L_{CDM}`. Temperature ``tau = 0.1`` for both terms
(``--nce-t 0.1``; the cross-domain logits reuse it, ``--temp2 1.0``); memory momentum 0.5
(``--nce-m 0.5``) with L2 renormalisation; memories initialised with the initial model's features of
the clean inputs (the code's ``recompute_memory`` before the first epoch).

Schedule (official repository VisionLearningGroup/CDS at 5b3644c, ``CDS_pretraining/CDS_pretraining.py``):
``paper`` follows the official pre-training script: 7 epochs (l. 174), SGD lr 0.003 (l. 21) held constant
(``lr_schedule="constant"``: no scheduler is stepped), momentum 0.9, weight decay 5e-4 (l. 165), batch 32 for
the smaller domain (``--batch_size 16`` l. 62 times ``bs1`` / ``bs2 = 2``, ll. 94-97; the larger domain's
batch is scaled by the size ratio, ll. 114-117, ``return_dataset.py`` ll. 69-71, so one epoch passes once over
each domain). Our paired sampler draws 32 from each domain and cycles the smaller one over
``ceil(max(N_A, N_B) / 32)`` steps. ``features`` (fresh head on a frozen pretrained backbone, like CDS's fresh
``fc`` on an ImageNet ResNet-50): 30 epochs of CDS. ``digits``: 12 + 12 epochs, see below.

Deviations: none in the losses; the code's mixed precision is not used. No compulsory customisation was
needed (CDS is already label-free). One adaptation to the from-scratch ``digits`` profile: CDS is a
*second* pre-training stage that starts from a pretrained network (ImageNet in the paper). A CNN from
scratch has no structure yet, and the entropy term then wins against instance discrimination (measured on
digits PR→MN: within-domain mAP 12.8 against 32.7 for raw pixels, i.e. near chance). So ``digits`` first
trains ``id_only_epochs = 12`` epochs of in-domain instance discrimination alone (its own cosine schedule,
standing in for the first pre-training), then 12 epochs of CDS; the other profiles have
``id_only_epochs = 0``. Retrieval and detection: cosine distance (CDS's kNN retrieval uses dot products
of unit-norm features).
Views: one default augmented view per sample and step; clean inputs for the memory init and ``embed``.
Forward mode: each domain goes through the network on its own (``custom_function/selfsup.py`` ll. 55-56:
``net(inputs)`` then ``net(inputs2)``), so BatchNorm normalises each domain by its own batch
(``joint_forward=False``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.losses import instance_nce
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Range, Space


def cross_domain_entropy(
    f: torch.Tensor, other_bank: torch.Tensor, tau: float = 0.1, top_k: int = 700, eps: float = 1e-5
) -> torch.Tensor:
    """CDS Eq. 3-4: mean entropy of each row's softmax over its ``top_k`` most similar other-domain slots.

    Args:
        f: ``[B, D]`` L2-normalised features of one domain.
        other_bank: ``[N', D]`` the other domain's memory (no gradient).
        tau: temperature of the similarity logits ``f . m / tau``.
        top_k: number of most similar entries kept per row (clamped to ``N'``); CDS's ``--n_neighbor 700``.
        eps: inside the log, as the official code (``log(p + 1e-5)``).

    Returns:
        scalar, :math:`-\\frac1B\\sum_i\\sum_j p'_{ij}\\log(p'_{ij}+\\epsilon)` in nats.
    """
    logits = f @ other_bank.t() / tau
    k = int(max(1, min(top_k, other_bank.shape[0])))
    p = F.softmax(logits.topk(k, dim=1).values, dim=1)
    return -(p * (p + eps).log()).sum(dim=1).mean()


@register_method
class Cds(EncoderMethod):
    """CDS: per-domain memory-bank instance discrimination + cross-domain entropy minimisation."""

    name = "cds"
    summary = "In-domain instance discrimination + cross-domain matching by entropy minimisation (CDS)."
    citation = (
        "Kim, Saito, Oh, Plummer, Sclaroff, Saenko. CDS: Cross-Domain Self-Supervised Pre-Training. ICCV 2021"
    )
    distance = "cosine"
    needs_num_classes = False
    hparam_space: ClassVar[dict[str, Space]] = {
        "cdm_weight": Range(0),
        "top_k": Range(1),
        "entropy_eps": Range(0, open_low=True),
        "id_only_epochs": Range(0),
    }
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 7,
        "tau": 0.1,
        "memory_momentum": 0.5,
        "cdm_weight": 1.0,
        "top_k": 700,
        "entropy_eps": 1e-5,
        "joint_forward": False,  # selfsup.py ll. 55-56: one forward per domain
        "id_only_epochs": 0,
        "lr_schedule": "cosine",
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        # CDS_pretraining.py ll. 21, 62, 94-97, 165, 174 (module docstring)
        "paper": {
            "epochs": 7,
            "lr": 0.003,
            "weight_decay": 5e-4,
            "batch_size": 32,
            "lr_schedule": "constant",
        },
        "digits": {"epochs": 12, "id_only_epochs": 12},
        "features": {"epochs": 30},
    }

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        hp = self.hp
        bank_a = self.init_memory(domain_a, hp["memory_momentum"])
        bank_b = self.init_memory(domain_b, hp["memory_momentum"])
        epochs = self.epochs(hp["epochs"])
        pre_epochs = int(round(hp["id_only_epochs"] * self.ctx.epochs_scale))
        self.info.update(
            {
                "epochs": epochs,
                "id_only_epochs": pre_epochs,
                "top_k": int(min(hp["top_k"], domain_a.n, domain_b.n)),
            }
        )

        def id_step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            fa, fb = self.forward_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
            mem_a, mem_b = bank_a.bank, bank_b.bank  # updated after the optimiser step
            inst = 0.5 * (
                instance_nce(fa, mem_a, idx_a, tau=hp["tau"]) + instance_nce(fb, mem_b, idx_b, tau=hp["tau"])
            )
            fa_, fb_ = fa.detach(), fb.detach()
            self.after_step(lambda: (bank_a.update(idx_a, fa_), bank_b.update(idx_b, fb_)))
            return inst, {"inst": float(inst.detach())}

        if pre_epochs > 0:
            self.train_stage("in-domain pre-training", domain_a, domain_b, pre_epochs, id_step)

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            fa, fb = self.forward_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
            mem_a, mem_b = bank_a.bank, bank_b.bank  # updated after the optimiser step
            inst = 0.5 * (
                instance_nce(fa, mem_a, idx_a, tau=hp["tau"]) + instance_nce(fb, mem_b, idx_b, tau=hp["tau"])
            )
            ent_ab = cross_domain_entropy(fa, mem_b, hp["tau"], int(hp["top_k"]), hp["entropy_eps"])
            ent_ba = cross_domain_entropy(fb, mem_a, hp["tau"], int(hp["top_k"]), hp["entropy_eps"])
            loss = inst + hp["cdm_weight"] * (ent_ab + ent_ba)
            fa_, fb_ = fa.detach(), fb.detach()
            self.after_step(lambda: (bank_a.update(idx_a, fa_), bank_b.update(idx_b, fb_)))
            return loss, {
                "inst": float(inst.detach()),
                "ent_ab": float(ent_ab.detach()),
                "ent_ba": float(ent_ba.detach()),
            }

        self.train_stage("cds", domain_a, domain_b, epochs, step)
