"""Baseline ``dann``: per-domain instance discrimination + domain-adversarial alignment (gradient reversal).

Paper: Y. Ganin, V. Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015 (DANN);
the instance term is InstDisc's (Wu et al., CVPR 2018). This is the "standard adversarial learning"
that UEM's SPDA modifies (UEM paper Eq. 13 and its "w/o SPDA" ablation, Table 4; paper-spec §2.3(a)).

Losses for a paired batch (``B`` views of A, ``B`` views of B; ``f`` L2-normalised encoder outputs):

* per-domain instance discrimination against each domain's own memory (paper-spec Eq. 6, full bank):
  :math:`\\mathcal L^X_{inst} = \\frac1B\\sum_i -\\log\\frac{\\exp(f_i\\cdot m^X_i/\\tau)}{\\sum_j
  \\exp(f_i\\cdot m^X_j/\\tau)}`, ``X in {A, B}``, ``tau = 0.07``, memory momentum 0.5 (InstDisc);
* domain-adversarial loss (DANN Eq. 9-10 / Eq. 13 of UEM with ``reduction="mean"``): the binary
  cross-entropy of a domain classifier ``g`` (``y = 1`` for A, ``0`` for B) on ``GRL_lambda(f)``:
  :math:`\\mathcal L_{adv} = \\frac1{2B}\\sum_i \\mathrm{BCE}(g(R_\\lambda(f_i)), y_i)`.
  ``R_lambda`` is the identity forward and multiplies the gradient by ``-lambda`` backward, so one SGD
  step makes ``g`` minimise and the encoder maximise the domain loss (DANN's saddle point, its Eq. 10).
  ``lambda_p = 2 / (1 + exp(-gamma p)) - 1`` with ``gamma = 10`` and ``p`` the training progress in
  [0, 1] (DANN §5.2.2).

Total: :math:`\\mathcal L = \\mathcal L^A_{inst} + \\mathcal L^B_{inst} + w\\,\\mathcal L_{adv}`, ``w = 1``.

Compulsory customisation: DANN's label classifier on the source domain is removed (no labels in U²CDR);
per-domain instance discrimination takes its place as the feature-learning signal. Other deviations:
the domain classifier is the toolkit's two-layer ``DomainClassifier`` (256 hidden units, as UEM's
discriminator, paper-spec §7 #7) instead of DANN's 1024-1024 three-layer one, so ``dann`` differs from
UEM's stage 2 only by what UEM adds; its learning rate follows the profile's cosine schedule instead of
DANN's ``mu_0 / (1 + 10 p)^0.75`` annealing. Retrieval and detection: cosine distance.
Views: one default augmented view per sample and step; clean inputs for the memory init and ``embed``.
The two domains' batches go through the encoder in one pass (``joint_forward=True``), so BatchNorm
normalises training batches with statistics of both domains, as its eval-mode running statistics do.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.grl import DomainClassifier, dann_lambda, domain_adversarial_loss
from u2cdr_bench.blocks.losses import instance_nce
from u2cdr_bench.blocks.memory import MemoryBank
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Range, Space
from u2cdr_bench.training import steps_per_epoch


@register_method
class Dann(EncoderMethod):
    """Per-domain memory-bank instance discrimination plus a gradient-reversal domain classifier."""

    name = "dann"
    summary = "Per-domain instance discrimination + domain-adversarial alignment by gradient reversal (DANN)."
    citation = (
        "Ganin, Lempitsky. Unsupervised Domain Adaptation by Backpropagation. ICML 2015 "
        "(+ instance discrimination: Wu, Xiong, Yu, Lin. CVPR 2018)"
    )
    distance = "cosine"
    needs_num_classes = False
    hparam_space: ClassVar[dict[str, Space]] = {
        "adv_weight": Range(0),
        "gamma": Range(0),
        "disc_lr_mult": Range(0),
    }
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "tau": 0.07,
        "memory_momentum": 0.5,
        "adv_weight": 1.0,
        "gamma": 10.0,
        "disc_hidden": 256,
        "disc_lr_mult": 1.0,
        "joint_forward": True,
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "digits": {"epochs": 24},
        "features": {"epochs": 30},
    }

    classifier: DomainClassifier
    banks: tuple[MemoryBank, MemoryBank]

    def setup(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """Memory banks of both domains (initial model) and a fresh domain classifier."""
        hp = self.hp
        self.banks = (
            self.init_memory(domain_a, hp["memory_momentum"]),
            self.init_memory(domain_b, hp["memory_momentum"]),
        )
        self.classifier = DomainClassifier(self.banks[0].dim, int(hp["disc_hidden"])).to(self.ctx.device)

    def encode_pair(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features ``[B_A, D]``, ``[B_B, D]`` of both batches: one encoder pass over the
        concatenation (``joint_forward``: BatchNorm statistics mix the domains, as the eval-mode running
        statistics do) or one pass per domain (BatchNorm normalises each domain by its own batch)."""
        if self.hp["joint_forward"]:
            f = self.features(torch.cat([xa, xb]))
            return f[: len(xa)], f[len(xa) :]
        return self.features(xa), self.features(xb)

    def losses(
        self, xa: torch.Tensor, xb: torch.Tensor, idx_a: torch.Tensor, idx_b: torch.Tensor, lam: float
    ) -> dict[str, torch.Tensor]:
        """The three terms and their weighted sum for inputs ``xa`` / ``xb`` (rows ``idx_a`` / ``idx_b``).

        Returns ``inst_a``, ``inst_b``, ``adv`` (mean BCE, GRL with coefficient ``lam``), ``total`` and
        the features ``fa``, ``fb`` ``[B, D]``. The memory banks are not updated here.
        """
        bank_a, bank_b = self.banks
        fa, fb = self.encode_pair(xa, xb)
        inst_a = instance_nce(fa, bank_a.bank.clone(), idx_a, tau=self.hp["tau"])
        inst_b = instance_nce(fb, bank_b.bank.clone(), idx_b, tau=self.hp["tau"])
        adv = domain_adversarial_loss(self.classifier, fa, fb, lam=lam, reduction="mean")
        total = inst_a + inst_b + self.hp["adv_weight"] * adv
        return {"inst_a": inst_a, "inst_b": inst_b, "adv": adv, "total": total, "fa": fa, "fb": fb}

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        hp = self.hp
        self.setup(domain_a, domain_b)
        epochs = self.epochs(hp["epochs"])
        total_steps = epochs * steps_per_epoch(domain_a.n, domain_b.n, int(hp["batch_size"]))
        state = {"it": 0}
        self.info.update({"epochs": epochs, "domain_classifier_hidden": int(hp["disc_hidden"])})

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            lam = dann_lambda(state["it"] / max(1, total_steps), hp["gamma"])
            state["it"] += 1
            out = self.losses(self.view(domain_a, idx_a), self.view(domain_b, idx_b), idx_a, idx_b, lam)
            self.banks[0].update(idx_a, out["fa"].detach())
            self.banks[1].update(idx_b, out["fb"].detach())
            with torch.no_grad():
                logits = self.classifier(torch.cat([out["fa"], out["fb"]]))
                truth = torch.cat([torch.ones(len(idx_a)), torch.zeros(len(idx_b))]).to(logits)
                acc = ((logits > 0).float() == truth).float().mean()
            info = {k: float(out[k].detach()) for k in ("inst_a", "inst_b", "adv")}
            info.update({"lambda": lam, "domain_acc": float(acc)})
            return out["total"], info

        extra = [{"params": list(self.classifier.parameters()), "lr_mult": float(hp["disc_lr_mult"])}]
        self.train_stage("dann", domain_a, domain_b, epochs, step, extra_param_groups=extra)
        self.info["final_domain_acc"] = self._domain_accuracy(domain_a, domain_b)

    @torch.no_grad()
    def _domain_accuracy(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> float:
        """Domain-classifier accuracy on the clean features of both domains (0.5 = domains aligned)."""
        fa, fb = self.encode_all(domain_a), self.encode_all(domain_b)
        was = self.classifier.training
        self.classifier.eval()
        logits = self.classifier(F.normalize(torch.cat([fa, fb]).to(self.ctx.device), dim=1))
        self.classifier.train(was)
        truth = torch.cat([torch.ones(len(fa)), torch.zeros(len(fb))]).to(logits)
        return float(((logits > 0).float() == truth).float().mean())
