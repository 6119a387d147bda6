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
per-domain instance discrimination takes its place as the feature-learning signal.

Discriminator and learning rates as the reference DANN implementation, tllib (thuml/Transfer-Learning-Library
at c4aa59e): the discriminator has two hidden layers of 1024 units with BatchNorm and ReLU
(:class:`~u2cdr_bench.blocks.grl.DomainDiscriminator`; ``tllib/modules/domain_discriminator.py`` ll. 29-46,
``examples/domain_adaptation/image_classification/dann.py`` l. 76: ``hidden_size=1024``), and every new layer
(bottleneck, head, discriminator) trains at the base lr while the pretrained backbone trains at 0.1 of it
(``tllib/modules/classifier.py`` ll. 88-98 with ``finetune=True``, ``domain_discriminator.py`` ll. 58-59),
i.e. the discriminator at **10x the backbone's lr**. In the ``paper`` profile (finetuning) the base lr of our
schedule is the backbone's, so the encoder head and the discriminator get
``head_lr_mult = disc_lr_mult = 10``. In ``features`` mode the trained encoder is itself a new layer (a fresh
head on frozen features: tllib's bottleneck) and ``digits`` trains its CNN from scratch (tllib's
``finetune=False``: the backbone at the base lr too), so there every part trains at the shared lr
(``head_lr_mult = disc_lr_mult = 1``), as tllib's ratios between the new layers are 1.
``discriminator="two-layer"`` gives the toolkit's ``DomainClassifier`` (256 hidden units, UEM's discriminator,
paper-spec §7 #7), with which ``dann`` differs from UEM's stage 2 only by what UEM adds.

Other deviations: the learning rate follows the profile's cosine schedule instead of tllib's
``lr (1 + 0.001 i)^-0.75`` (``dann.py`` l. 81; DANN's ``mu_0 / (1 + 10 p)^0.75``), and the GRL coefficient
DANN's ``lambda_p`` over the whole run instead of tllib's warm start over its first 1000 iterations. Retrieval
and detection: cosine distance. Views: one default augmented view per sample and step; clean inputs for the
memory init and ``embed``. The two domains' batches go through the encoder in one pass
(``joint_forward=True``, as tllib's ``dann.py`` ll. 167-170 concatenates ``x_s`` and ``x_t``), so BatchNorm
normalises training batches with statistics of both domains, as its eval-mode running statistics do.

Monitoring: the per-step domain accuracy is read from the logits of the adversarial loss's forward pass.
Before issue 13 a second, gradient-free pass computed it, which also moved the discriminator's BatchNorm
running statistics a second time per step; those statistics serve only the eval-mode ``final_domain_acc``
diagnostic (training uses batch statistics), so that diagnostic is the one number this changed
(docs/performance.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.grl import (
    DomainClassifier,
    DomainDiscriminator,
    dann_lambda,
    domain_adversarial_loss_and_logits,
)
from u2cdr_bench.blocks.losses import instance_nce
from u2cdr_bench.blocks.memory import MemoryBank
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Choice, Range, Space
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
        "discriminator": Choice("tllib", "two-layer"),
    }
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "tau": 0.07,
        "memory_momentum": 0.5,
        "adv_weight": 1.0,
        "gamma": 10.0,
        "discriminator": "tllib",
        "disc_hidden": 1024,
        "disc_lr_mult": 1.0,
        "head_lr_mult": 1.0,
        "joint_forward": True,
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        # tllib: new layers at 10x the pretrained backbone's lr (module docstring)
        "paper": {"disc_lr_mult": 10.0, "head_lr_mult": 10.0},
        "digits": {"epochs": 24},
        "features": {"epochs": 30},
    }

    classifier: torch.nn.Module
    banks: tuple[MemoryBank, MemoryBank]

    def setup(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """Memory banks of both domains (initial model) and a fresh domain classifier."""
        hp = self.hp
        self.banks = (
            self.init_memory(domain_a, hp["memory_momentum"]),
            self.init_memory(domain_b, hp["memory_momentum"]),
        )
        kind = hp["discriminator"]
        if kind == "tllib":
            self.classifier = DomainDiscriminator(self.banks[0].dim, int(hp["disc_hidden"]))
        elif kind == "two-layer":
            self.classifier = DomainClassifier(self.banks[0].dim, int(hp["disc_hidden"]))
        else:
            from u2cdr_bench.errors import UserError

            raise UserError(
                f"Hyper-parameter discriminator of method dann must be 'tllib' or 'two-layer', got {kind!r}."
            )
        self.classifier = self.classifier.to(self.ctx.device)

    def param_groups(self) -> list[dict[str, Any]]:
        """The encoder's backbone at the lr, its head at ``head_lr_mult`` times it (tllib's new layers)."""
        head = getattr(self.encoder, "head", None)
        if head is None:
            return super().param_groups()
        in_head = {id(p) for p in head.parameters()}
        rest = [p for p in self.encoder.parameters() if id(p) not in in_head]
        return [
            {"params": rest},
            {"params": list(head.parameters()), "lr_mult": float(self.hp["head_lr_mult"])},
        ]

    def losses(
        self, xa: torch.Tensor, xb: torch.Tensor, idx_a: torch.Tensor, idx_b: torch.Tensor, lam: float
    ) -> dict[str, torch.Tensor]:
        """The three terms and their weighted sum for inputs ``xa`` / ``xb`` (rows ``idx_a`` / ``idx_b``).

        Returns ``inst_a``, ``inst_b``, ``adv`` (mean BCE, GRL with coefficient ``lam``), ``total``, the
        features ``fa``, ``fb`` ``[B, D]`` and the domain classifier's ``logits`` ``[B_A + B_B]``. The memory
        banks are not updated here (the training step updates them after the optimiser step).
        """
        bank_a, bank_b = self.banks
        fa, fb = self.forward_pair(xa, xb)
        inst_a = instance_nce(fa, bank_a.bank, idx_a, tau=self.hp["tau"])
        inst_b = instance_nce(fb, bank_b.bank, idx_b, tau=self.hp["tau"])
        adv, logits = domain_adversarial_loss_and_logits(self.classifier, fa, fb, lam=lam, reduction="mean")
        total = inst_a + inst_b + self.hp["adv_weight"] * adv
        return {
            "inst_a": inst_a,
            "inst_b": inst_b,
            "adv": adv,
            "total": total,
            "fa": fa,
            "fb": fb,
            "logits": logits,
        }

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
            fa, fb = out["fa"].detach(), out["fb"].detach()
            self.after_step(lambda: (self.banks[0].update(idx_a, fa), self.banks[1].update(idx_b, fb)))
            # the domain accuracy of this batch, from the adversarial forward pass (no second pass)
            logits = out["logits"].detach()
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
