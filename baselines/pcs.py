"""Method ``pcs``: Prototypical Cross-domain Self-supervised learning, without its few-shot classifier.

Paper: Xiangyu Yue, Zangwei Zheng, Shanghang Zhang, Yang Gao, Trevor Darrell, Kurt Keutzer, Alberto
Sangiovanni-Vincentelli, "Prototypical Cross-domain Self-supervised Learning for Few-shot Unsupervised
Domain Adaptation", CVPR 2021 (arXiv 2103.16765). Official code: github.com/zhengzangw/PCS-FUDA
(``pcs/models/ssda.py``, ``pcs/models/clustering.py``, ``pcs/agents/CDSAgent.py``, ``config/*.json``).

What it trains (per domain ``X`` in {A, B}; ``f_i`` = L2-normalised feature of an augmented view,
``V^X`` = the domain's memory bank, updated ``v_i <- normalize(m v_i + (1 - m) f_i)`` with ``m = 0.5``):

* **In-domain prototypical contrast** (paper Sec. 3.2, Eq. 2–3, code ``_compute_proto_loss``): once per
  epoch, spherical k-means on ``V^X`` is run ``M`` times (the official multi-k list ``k x n_k``: each
  granularity in ``k_mults x C_X`` repeated ``n_k`` times with different seeds, 40 Lloyd iterations), giving
  unit prototypes ``mu_c``, assignments ``c(i)`` and concentrations

      phi_c = sum_{i in c} ||v_i - mu_c|| / (Z_c log(Z_c + alpha)),   alpha = 10,  phi_c >= 0.05

  (``compute_variance``; singletons get 0.05). The loss is ProtoNCE averaged over the ``M`` clusterings,

      L_PC^X = 1/M sum_m mean_i -log exp(f_i.mu_{c(i)}/phi_{c(i)}) / sum_c exp(f_i.mu_c/phi_c).

* **Cross-domain instance-to-prototype self-supervision** (paper Sec. 3.3, "CrossSelf", code
  ``_compute_I2C_loss``): the entropy of each sample's similarity distribution over the *other*
  domain's prototypes is minimised, so that every sample is confidently near one prototype there,

      P_ic = exp(f_i.mu'_c / t) / sum_c' exp(f_i.mu'_c' / t),
      L_I2C^X = 1/M sum_m mean_i H(P_i),  H(p) = -sum_c p_c log p_c,   t = 0.1.

* Total: ``w_proto_a L_PC^A + w_proto_b L_PC^B + w_i2c (L_I2C^A + L_I2C^B) [+ w_id (L_ID^A + L_ID^B)]``.
  ``L_ID`` is memory-bank instance discrimination (code ``_compute_ID_loss``, temperature ``t``),
  implemented by the official code but marked "not used in essay" and enabled by no released config; it is
  off by default (``w_id = 0``) and available for a CDS-style variant.

Per-dataset loss weights (official repository zhengzangw/PCS-FUDA at 1b82dd0; :attr:`PCS.dataset_profiles`):
Office-31 (``config/office/*.json``, e.g. ``A-D-1.json`` ll. 39-40, 46) weights ``proto-each`` 1 (both
domains) and ``I2C-cross`` 1; Office-Home (``config/officehome_Ar-Cl.json`` ll. 38-40, 46, and
``officehome_Rw-Pr.json``) weights ``proto-src`` 1, ``proto-tgt`` **0.5** and ``I2C-cross`` 1. No DomainNet
config is released; the ``domainnet`` configuration (also PACS, digits) takes Office-31's, the symmetric one,
which needs no choice of which domain is the target. Source / target: the official ``proto-src`` /
``proto-tgt`` losses act on the labelled-source and the target domain only (``pcs/models/ssda.py``
ll. 160-163). We map the target to the query domain A and the source to the gallery domain B, as CoDA's
retrieval evaluation does (``test_target``: the gallery is the source domain, the queries the target
domain), so Office-Home gives ``w_proto_a = 0.5``, ``w_proto_b = 1``.

Optimisation (``pcs/agents/CDSAgent.py::_create_optimizer`` ll. 275-316, ``pcs/run.py`` ll. 45-46, the
configs' ``optim_params``, e.g. ``officehome_Ar-Cl.json`` ll. 15-24): SGD momentum 0.9, **Nesterov**, lr 0.01
for the new ``fc`` layer and ``conv_lr_ratio = 0.1`` of it for the pretrained backbone (convolutions and
BatchNorm), **no weight decay on BatchNorm parameters** (l. 284) and 5e-4 elsewhere, **inverse decay**
``lr (1 + 1e-4 i)^-0.75`` stepped after every optimiser step (``torchutils.py::lr_scheduler_invLR`` l. 193,
``CDSAgent.py`` l. 591), batch 64 per domain. Here the encoder's ``head`` plays the ``fc`` and its
``backbone`` the convolutional trunk (:meth:`PCS.param_groups`; ``backbone_lr_mult = 0.1``); BatchNorm
parameters are found by module type (the official name match ``"bn"`` misses the ``downsample.1`` BatchNorms
of a torchvision ResNet, which therefore keep their weight decay there). The ``paper`` profile takes all of
it; one of our steps makes both domains' updates, so the decay's ``gamma`` per step is 2e-4 (official: one
decay step per domain step, two per batch). The ``features`` profile (a fresh head, no trainable backbone)
keeps the shared schedule; ``digits`` trains its CNN from scratch, where the ratio that slows a pretrained
trunk does not apply (``backbone_lr_mult = 1``, as tllib's ``finetune=False``).

Forward mode: each domain goes through the network on its own (``CDSAgent.py`` ll. 395, 419: a loop over
``("source", "target")``, ``self.model(images_unl)`` per domain, and an optimiser step per domain, l. 551), so
BatchNorm normalises each domain by its own batch (``joint_forward=False``); we keep one optimiser step for
both domains' losses.

Views: one default augmented view per sample and step (``domain.view``); memory banks are initialised
with the initial model's features of the clean inputs.

Compulsory customisation and other deviations:

* The few-shot parts are dropped: the cosine classifier, the labelled-source loss (``cls-so``),
  prototype-initialised classifier weights, pseudo-labels and the MIM losses (``semi-*``, ``tgt-*``), all
  of which need source labels.
* Number of clusters: the true per-domain class counts ``ctx.num_classes = (C_A, C_B)`` (the paper gave
  PCS the true count, paper-spec §3), so ``k`` may differ between the domains; the official code used one
  ``k`` list for both (equal label spaces). The m-th clustering of A is paired with the m-th of B in the
  I2C loss, as in the code.
* A fixed epoch budget (200 in ``paper``) replaces the official up-to-500 epochs with early stopping on
  labelled target accuracy (not allowed without labels).
* ``n_k`` (repeats per granularity) is 15 in the paper profile (official) and reduced on the small
  profiles (digits 3, features 5) to keep k-means cheap on a CPU.

Retrieval uses the L2-normalised features; the generic open-set detector runs in cosine distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.kmeans import KMeansResult, kmeans
from u2cdr_bench.blocks.losses import entropy, instance_nce
from u2cdr_bench.blocks.prototypes import PrototypeLevel, concentration, proto_nce_multi
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Items, Range, Space

__all__ = ["PCS", "cross_prototype_entropy", "pcs_concentration"]


def pcs_concentration(
    x: torch.Tensor | np.ndarray,
    result: KMeansResult,
    alpha: float = 10.0,
    phi_min: float = 0.05,
) -> torch.Tensor:
    """PCS's per-cluster concentration ``phi`` ``[K]`` float32 (official ``compute_variance``).

    ``phi_c = sum_{i in c} ||x_i - mu_c|| / (Z_c log(Z_c + alpha))`` over the ``Z_c`` members of cluster
    ``c`` (PCL Eq. 12, :func:`u2cdr_bench.blocks.prototypes.concentration` without clipping or rescaling),
    then PCS's own rules: clusters with at most one member get ``phi_min``, and every ``phi`` is floored at
    ``phi_min``. Unlike PCL there is no percentile clipping and no rescaling to the temperature.

    Args:
        x: ``[N, D]`` clustered features (memory entries).
        result: their k-means result (centroids ``mu_c`` and assignment).
    """
    phi = concentration(x, result, alpha=alpha, tau=None, clip=None)
    counts = np.bincount(np.asarray(result.assign, dtype=np.int64), minlength=result.k)
    phi = np.where(counts <= 1, phi_min, np.maximum(phi, phi_min))
    return torch.from_numpy(phi).float()


def cross_prototype_entropy(f: torch.Tensor, prototypes: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """PCS's cross-domain instance-to-prototype loss (CrossSelf) for one clustering.

    ``mean_i H(softmax_c(f_i.mu_c / tau))`` with ``f`` ``[B, D]`` features of one domain and ``prototypes``
    ``[K, D]`` of the *other* domain; ``H`` is the Shannon entropy in nats. Gradient flows into ``f`` only.
    """
    p = torch.softmax(f @ prototypes.detach().t() / tau, dim=1)
    return entropy(p, dim=1).mean()


@register_method
class PCS(EncoderMethod):
    name = "pcs"
    summary = (
        "PCS: in-domain ProtoNCE (multi-k, PCS concentrations) + cross-domain instance-to-prototype entropy."
    )
    citation = (
        "Yue, Zheng, Zhang, Gao, Darrell, Keutzer, Sangiovanni-Vincentelli, 'Prototypical Cross-domain "
        "Self-supervised Learning for Few-shot Unsupervised Domain Adaptation', CVPR 2021."
    )
    distance = "cosine"
    needs_num_classes = True
    hparam_space: dict[str, Space] = {
        "k_mults": Items(Range(0, open_low=True, kind=float)),
        "n_k": Range(1),
        "kmeans_iter": Range(1),
        "phi_alpha": Range(0),
        "phi_min": Range(0),
        "w_proto_a": Range(0),
        "w_proto_b": Range(0),
        "w_i2c": Range(0),
        "w_id": Range(0),
        "bn_weight_decay": Range(0),
    }
    defaults: dict[str, Any] = {
        "epochs": 200,
        "tau": 0.1,  # official loss_params.temp (I2C and ID temperature)
        "k_mults": [1, 2],  # official k = [C, 2C]
        "n_k": 15,  # official repeats of each k
        "kmeans_iter": 40,
        "phi_alpha": 10.0,
        "phi_min": 0.05,
        "memory_momentum": 0.5,  # official loss_params.m default
        "w_proto_a": 1.0,  # proto loss of the query domain A (the official target)
        "w_proto_b": 1.0,  # proto loss of the gallery domain B (the official source)
        "w_i2c": 1.0,
        "w_id": 0.0,
        "joint_forward": False,  # CDSAgent.py ll. 395, 419: one forward per domain
        "backbone_lr_mult": 0.1,  # conv_lr_ratio (configs' optim_params)
        "bn_weight_decay": 0.0,  # CDSAgent.py l. 284
        "nesterov": False,
        "lr_schedule": "cosine",
        "lr_decay_gamma": 2e-4,
    }
    profiles: dict[str, dict[str, Any]] = {
        # CDSAgent.py ll. 275-316, run.py ll. 45-46, e.g. officehome_Ar-Cl.json ll. 15-24 (module docstring)
        "paper": {
            "lr": 0.01,
            "weight_decay": 5e-4,
            "batch_size": 64,
            "nesterov": True,
            "lr_schedule": "inverse",
        },
        "digits": {"epochs": 24, "n_k": 3, "backbone_lr_mult": 1.0},
        "features": {"epochs": 30, "n_k": 5},
    }
    dataset_profiles: dict[str, dict[str, Any]] = {
        "office31": {"w_proto_a": 1.0, "w_proto_b": 1.0, "w_i2c": 1.0},  # office/A-D-1.json l. 46
        "officehome": {"w_proto_a": 0.5, "w_proto_b": 1.0, "w_i2c": 1.0},  # officehome_Ar-Cl.json l. 46
        "domainnet": {"w_proto_a": 1.0, "w_proto_b": 1.0, "w_i2c": 1.0},  # no config: Office-31's
    }

    def param_groups(self) -> list[dict[str, Any]]:
        """PCS's groups: the backbone at ``backbone_lr_mult`` of the lr, the head (the official ``fc``) at
        the lr, BatchNorm parameters without weight decay (``CDSAgent.py`` ll. 281-296)."""
        hp = self.hp
        backbone = getattr(self.encoder, "backbone", None)
        in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
        bn_params = {
            id(p)
            for m in self.encoder.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False)
        }
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for prm in self.encoder.parameters():
            groups.setdefault((id(prm) in in_backbone, id(prm) in bn_params), []).append(prm)
        out = []
        for (is_backbone, is_bn), params in sorted(groups.items()):
            group: dict[str, Any] = {"params": params}
            if is_backbone:
                group["lr_mult"] = float(hp["backbone_lr_mult"])
            if is_bn:
                group["weight_decay"] = float(hp["bn_weight_decay"])
            out.append(group)
        return out

    def _cluster(self, bank: torch.Tensor, ks: list[int], epoch: int, dom: int) -> list[PrototypeLevel]:
        """Spherical k-means on ``bank`` for every ``k`` of the multi-k list, with PCS concentrations.

        Clustering ``m`` of epoch ``e`` is seeded ``seed + 1234 + m (e + 1) + 7919 dom`` (official:
        ``1234 + m e``), 40 Lloyd iterations, one restart, unit centroids (faiss spherical k-means).
        """
        x = bank.cpu().numpy().astype(np.float32, copy=True)
        out = []
        for m, k in enumerate(ks):
            seed = int(self.ctx.seed) + 1234 + m * (epoch + 1) + 7919 * dom
            km = kmeans(x, k, seed=seed, niter=int(self.hp["kmeans_iter"]), nredo=1, spherical=True)
            dev = self.ctx.device
            out.append(
                PrototypeLevel(
                    centroids=F.normalize(torch.from_numpy(km.centroids).float(), dim=1).to(dev),
                    assign=torch.from_numpy(km.assign).long().to(dev),
                    phi=pcs_concentration(x, km, self.hp["phi_alpha"], self.hp["phi_min"]).to(dev),
                )
            )
        return out

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        if self.ctx.num_classes is None:
            raise UserError("Method pcs needs the class counts of both domains (FitContext.num_classes).")
        hp = self.hp
        ks = []
        for c in self.ctx.num_classes:
            base = [max(1, int(round(mult * int(c)))) for mult in hp["k_mults"]]
            ks.append(base * int(hp["n_k"]))
        self.info["k_lists"] = {
            "A": ks[0][: len(hp["k_mults"])],
            "B": ks[1][: len(hp["k_mults"])],
            "n_k": hp["n_k"],
        }
        domains = (domain_a, domain_b)
        banks = [self.init_memory(d, hp["memory_momentum"]) for d in domains]
        clusters: list[list[PrototypeLevel]] = [[], []]
        tau = float(hp["tau"])

        def on_epoch_start(epoch: int) -> None:
            for dom in range(2):
                clusters[dom] = self._cluster(banks[dom].bank, ks[dom], epoch, dom)

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            idxs = (idx_a, idx_b)
            feats = self.forward_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
            total = feats[0].new_zeros(())
            info: dict[str, float] = {}
            for dom in range(2):
                fd, idx = feats[dom], idxs[dom]
                own, other = clusters[dom], clusters[1 - dom]
                l_pc = proto_nce_multi(fd, own, idx)
                l_i2c = torch.stack([cross_prototype_entropy(fd, c.centroids, tau) for c in other]).mean()
                w_proto = hp["w_proto_a"] if dom == 0 else hp["w_proto_b"]
                total = total + w_proto * l_pc + hp["w_i2c"] * l_i2c
                info[f"proto_{'AB'[dom]}"] = float(l_pc.detach())
                info[f"i2c_{'AB'[dom]}"] = float(l_i2c.detach())
                if hp["w_id"]:
                    l_id = instance_nce(fd, banks[dom].bank.clone(), idx, tau=tau, negatives="bank")
                    total = total + hp["w_id"] * l_id
                    info[f"id_{'AB'[dom]}"] = float(l_id.detach())
            for dom in range(2):
                banks[dom].update(idxs[dom], feats[dom].detach())
            info["loss"] = float(total.detach())
            return total, info

        self.train_stage(
            "pcs", domain_a, domain_b, self.epochs(int(hp["epochs"])), step, on_epoch_start=on_epoch_start
        )
