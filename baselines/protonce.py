"""Baselines ``protonce``, ``protonce-joint``, ``protonce-domain``: PCL's ProtoNCE on two domains.

Paper: J. Li, P. Zhou, C. Xiong, S. C. H. Hoi, "Prototypical Contrastive Learning of Unsupervised
Representations", ICLR 2021 (PCL; official code salesforce/PCL, ``main_pcl.py``, ``pcl/builder.py``).

ProtoNCE (PCL Eq. 6) for a feature ``v = f(x)`` (L2-normalised, one augmented view) of sample ``i``:

.. math:: \\mathcal L = -\\log\\frac{\\exp(v\\cdot m_i/\\tau)}{\\sum_{j}\\exp(v\\cdot m_j/\\tau)}
          \\;-\\; \\frac1M\\sum_{m=1}^{M}\\log\\frac{\\exp(v\\cdot c^m_{s}/\\phi^m_{s})}
          {\\sum_{j=1}^{K_m}\\exp(v\\cdot c^m_j/\\phi^m_j)},\\qquad \\tau = 0.2,

* instance term: InfoNCE against a memory bank (InstDisc; momentum 0.5, L2-renormalised);
* prototype term: ``M`` k-means granularities ``K_1 < K_2 < K_3`` of the memory, L2-normalised centroids
  ``c``, per-cluster concentration ``phi`` (PCL Eq. 12, ``alpha = 10``, clipped to its 10th..90th
  percentiles, mean rescaled to ``tau``) — :mod:`u2cdr_bench.blocks.prototypes`;
* warm-up: the first ``warmup_epochs`` epochs use the instance term only (PCL: 20 of 200); afterwards the
  memory is re-clustered at the start of every epoch (PCL re-clusters every epoch).

**Number of clusters.** PCL clusters ImageNet (1000 classes) at 25k/50k/100k, i.e. over-clusters
heavily; our domains hold a few thousand images, so the list is scaled to the data: the true class count
``C`` (``needs_num_classes``: the runner passes ``(C_A, C_B)``, as the paper did for PCS/UCDIR/DGDIR)
is the coarsest granularity and the list is ``[C, 2C, 4C]`` (``cluster_multipliers``). An explicit
``num_clusters`` list overrides it; without either, ``C`` is estimated by the Elbow method on the initial
memory (recorded in ``info``).

**The two-domain variants** (compulsory customisation: PCL knows one unlabeled set):

* ``protonce-joint``: PCL applied to the pooled data. One memory over A ∪ B (instance negatives from both
  domains) and one k-means of the pooled memory, ``C = max(C_A, C_B)`` (the size of the union of the
  label spaces in close-set, partial and open-set alike, as one domain's classes contain the other's).
* ``protonce-domain``: per-domain PCL with a shared encoder. Each domain has its own memory (negatives
  from the own domain, as UEM's Eq. 6) and its own k-means with ``C = C_A`` resp. ``C_B``.
* ``protonce`` = ``protonce-domain``. Reason: instance discrimination on pooled domains learns to separate
  the domains rather than the classes (UEM §3.2 issue 1), which is why every cross-domain method built on
  PCL (PCS's in-domain prototypical learning, UCDIR, UEM's IDSE) clusters and contrasts per domain; the
  per-domain form is therefore the standard adaptation of PCL to two domains and the direct "IDSE without
  merging and SEL" reference for UEM. ``protonce-joint`` is kept for the pooled-data contrast.

In both variants the loss of a paired batch is the sum of the two domains' batch-mean ProtoNCE losses.

Other deviations: MoCo's momentum encoder + queue (PCL's instance term and the features it clusters)
is replaced by the memory bank, which is also what is clustered (a temporal ensemble of the encoder's
features, like the momentum encoder's); all prototypes are negatives instead of PCL's sample of
``r = 16384``; schedule: the profile's optimiser (``SCHEDULES``), PCL's 200 epochs / 20 warm-up for
``paper``, 24 / 3 for ``digits`` and 30 / 3 for ``features``; k-means as PCL's (20 iterations, 5
restarts) for ``paper``, one restart for ``digits`` / ``features`` (re-clustering every epoch on a CPU).
Retrieval and detection: cosine distance.
Views: one default augmented view per sample and step; clean inputs for the memory init and ``embed``.
The two domains' batches go through the encoder in one pass (``joint_forward=True``), so BatchNorm
normalises training batches with statistics of both domains, as its eval-mode running statistics do.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from u2cdr_bench.blocks.kmeans import elbow_k
from u2cdr_bench.blocks.losses import instance_nce
from u2cdr_bench.blocks.memory import MemoryBank
from u2cdr_bench.blocks.prototypes import PrototypeLevel, build_prototypes, proto_nce_multi
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Items, Range, Space

_PCL_CITATION = (
    "Li, Zhou, Xiong, Hoi. Prototypical Contrastive Learning of Unsupervised Representations. ICLR 2021"
)


@register_method
class ProtoNCE(EncoderMethod):
    """PCL's ProtoNCE (instance + multi-granularity prototype contrast); per-domain clustering."""

    name = "protonce"
    summary = "PCL ProtoNCE: instance + multi-granularity prototype contrast, per domain (= protonce-domain)."
    citation = _PCL_CITATION
    distance = "cosine"
    needs_num_classes = True
    clustering: ClassVar[str] = "domain"
    hparam_space: ClassVar[dict[str, Space]] = {
        "alpha": Range(0, open_low=True),
        "cluster_multipliers": Items(Range(1, kind=int)),
        "num_clusters": Items(Range(1, kind=int), nullable=True),
    }
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "warmup_epochs": 20,
        "tau": 0.2,
        "memory_momentum": 0.5,
        "alpha": 10.0,
        "cluster_multipliers": [1, 2, 4],
        "num_clusters": None,
        "elbow_k_max": 20,
        "kmeans_niter": 20,
        "kmeans_nredo": 5,
        "joint_forward": True,
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "digits": {"epochs": 24, "warmup_epochs": 3, "kmeans_nredo": 1},
        "features": {"epochs": 30, "warmup_epochs": 3, "kmeans_nredo": 1},
    }

    # ----- cluster counts ------------------------------------------------------------------------
    def cluster_counts(self, feats: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        """Granularities per clustered set (``"A"``/``"B"``, or ``"joint"``), ``feats`` keyed the same.

        ``num_clusters`` (user list) > true class counts x ``cluster_multipliers`` > Elbow estimate.
        """
        hp = self.hp
        if hp["num_clusters"] is not None:
            ks = [int(k) for k in hp["num_clusters"]]
            if not ks or min(ks) < 1:
                raise UserError(f"num_clusters must be a non-empty list of positive integers, got {ks}.")
            self.info["cluster_count_source"] = "num_clusters hyper-parameter"
            return {key: list(ks) for key in feats}
        mults = [int(m) for m in hp["cluster_multipliers"]]
        if not mults or min(mults) < 1:
            raise UserError(f"cluster_multipliers must be positive integers, got {mults}.")
        if self.ctx.num_classes is not None:
            c_a, c_b = (int(c) for c in self.ctx.num_classes)
            base = {"A": c_a, "B": c_b, "joint": max(c_a, c_b)}
            self.info["cluster_count_source"] = "true class counts (needs_num_classes)"
        else:
            base = {}
            for key, x in feats.items():
                k, _ = elbow_k(x.cpu().numpy(), k_min=2, k_max=int(hp["elbow_k_max"]), seed=self.ctx.seed)
                base[key] = k
            self.info["cluster_count_source"] = "elbow estimate (no class count given)"
        return {key: [m * base[key] for m in mults] for key in feats}

    def encode_pair(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features ``[B_A, D]``, ``[B_B, D]`` of both batches: one encoder pass over the
        concatenation (``joint_forward``: BatchNorm statistics mix the domains, as the eval-mode running
        statistics do) or one pass per domain (BatchNorm normalises each domain by its own batch)."""
        if self.hp["joint_forward"]:
            f = self.features(torch.cat([xa, xb]))
            return f[: len(xa)], f[len(xa) :]
        return self.features(xa), self.features(xb)

    # ----- training ------------------------------------------------------------------------------
    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        hp = self.hp
        tau = float(hp["tau"])
        epochs = self.epochs(hp["epochs"])
        warmup = min(epochs - 1, max(0, int(round(hp["warmup_epochs"] * self.ctx.epochs_scale))))
        joint = self.clustering == "joint"
        n_a = domain_a.n
        if joint:
            init = torch.cat([self.encode_all(domain_a), self.encode_all(domain_b)])
            banks = {"joint": MemoryBank(init, momentum=hp["memory_momentum"])}
        else:
            banks = {
                "A": self.init_memory(domain_a, hp["memory_momentum"]),
                "B": self.init_memory(domain_b, hp["memory_momentum"]),
            }
        levels: dict[str, list[PrototypeLevel]] = {}
        ks: dict[str, list[int]] = {}
        self.info.update({"epochs": epochs, "warmup_epochs": warmup, "clustering": self.clustering})

        def on_epoch_start(epoch: int) -> None:
            if epoch < warmup:
                return
            if not ks:
                ks.update(self.cluster_counts({key: b.bank for key, b in banks.items()}))
                self.info["num_clusters"] = {key: list(v) for key, v in ks.items()}
            for key, bank in banks.items():
                levels[key] = build_prototypes(
                    bank.bank,
                    ks[key],
                    seed=self.ctx.seed,
                    tau=tau,
                    alpha=hp["alpha"],
                    device=self.ctx.device,
                    niter=int(hp["kmeans_niter"]),
                    nredo=int(hp["kmeans_nredo"]),
                )

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            fa, fb = self.encode_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
            if joint:
                # rows of the pooled memory: A first, then B
                parts = [(fa, idx_a, "joint"), (fb, idx_b + n_a, "joint")]
            else:
                parts = [(fa, idx_a, "A"), (fb, idx_b, "B")]
            snaps = {key: b.bank for key, b in banks.items()}  # updated after the optimiser step
            inst = sum(instance_nce(f, snaps[key], rows, tau=tau) for f, rows, key in parts)
            loss = inst
            info = {"inst": float(inst.detach())}
            if levels:
                proto = sum(proto_nce_multi(f, levels[key], rows) for f, rows, key in parts)
                loss = loss + proto
                info["proto"] = float(proto.detach())
            done = [(rows, key, f.detach()) for f, rows, key in parts]
            self.after_step(lambda: [banks[key].update(rows, f) for rows, key, f in done])
            return loss, info

        self.train_stage("protonce", domain_a, domain_b, epochs, step, on_epoch_start=on_epoch_start)


@register_method
class ProtoNCEJoint(ProtoNCE):
    """ProtoNCE on the pooled domains: one memory and one k-means over A ∪ B."""

    name = "protonce-joint"
    summary = "PCL ProtoNCE on the pooled domains: one memory, one k-means of A and B together."
    clustering: ClassVar[str] = "joint"


@register_method
class ProtoNCEDomain(ProtoNCE):
    """ProtoNCE per domain: own memory and own k-means per domain, shared encoder."""

    name = "protonce-domain"
    summary = "PCL ProtoNCE per domain: own memory and own k-means per domain, shared encoder."
    clustering: ClassVar[str] = "domain"
