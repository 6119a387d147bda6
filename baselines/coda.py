"""CoDA baseline: Xu Wang, Dezhong Peng, Ming Yan, Peng Hu, "Correspondence-Free Domain Alignment for
Unsupervised Cross-Domain Image Retrieval", AAAI 2023 (arXiv 2302.06081; official code
github.com/wangxu-scu/CoDA, ``Trainer/trainer_coda.py::train_model``, ``network.py::Model``).

CoDA learns one L2-normalised embedding ``f`` with two losses built on per-domain classifiers:

* **Multi-granularity prototype classifiers.** Each domain ``d`` keeps a momentum memory ``M^d``
  (``m_i <- 0.95 m_i + 0.05 f_i``, renormalised; official ``LinearAverage``, ``--nce-m 0.95``) and, for
  every granularity ``g`` with ``K_g in {c, 2c, 3c, 4c}`` clusters (``cluster_num_list``), a bias-free
  linear classifier ``W^d_g`` ``[K_g, D]``. Before training, spherical k-means on the union of both memories
  gives shared centroids, each domain's memory is re-clustered from them, and the domain's centroids
  initialise ``W^d_g`` (``--kmeans_all_features True``). The classifiers are then trained with the
  encoder (official lr 1e-4 against 3e-3 for the network: ``head_lr_mult = 1/30``; no weight decay).
* **In-domain Self-matching Supervision (ISS).** The classifier applied to the sample's own memory entry,
  sharpened, is the soft target of the classifier applied to the current feature:
  ``t_i = softmax(W^d_g m^d_i / 0.01)`` (no gradient), ``L_ISS = -mean_i sum_k t_ik log softmax(W^d_g f_i)_k``
  for each domain (no temperature on the prediction, as in the code). :func:`iss_target`, :func:`iss_loss`.
* **Cross-domain Classifier Alignment (CCA).** The two domains' classifiers must agree on the same features of
  either domain: ``L_CCA = lambda * (mean_{i in B} ||W^A_g f_i - W^B_g f_i||_1 + mean_{i in A} ||...||_1)`` on
  raw logits (``--cross_domain_loss l1``, ``--cross_domain_softmax False``), ``lambda = 0.01`` (the argparse
  default and ``shells/run_coda.sh`` l. 11; 0 at commit 304dc94). :func:`classifier_alignment`.

Objective per step: ``mean_g (L^A_ISS + L^B_ISS) + mean_g L_CCA``; the memories are updated after each
step with the new (detached) features. The equation numbers of the AAAI paper could not be checked against
its text; the forms above are those of the official code.

Retrieval: normalised embeddings ranked by Euclidean distance (the official ``cal_map_sda``;
``distance="euclidean"``). Open-set: the auxiliary classifiers of the query domain A (coarsest granularity)
are the prototype set of the generic detector (paper-spec §4.2): each query goes to its arg-max class ``c``,
``D_c`` is the largest Euclidean distance of a class-``c`` query to the class weight ``w_c`` (the shared
``detector_threshold="radius"`` reading; ``"diameter"``: between two class-``c`` queries), and a query is
private iff the distance to its nearest gallery item exceeds ``D_c`` (:meth:`CoDA.detect_private`).

Settings (official repository wangxu-scu/CoDA at 67735cd unless a commit is named):

* ``paper`` profile, as the official script runs: network lr 3e-3 (``train_udar_oh_coda.py`` l. 100), held
  constant (``lr_schedule="constant"``: ``network.py`` l. 483 builds a ``StepLR`` that no file steps, and the
  ``lr_scheduler`` of ``train_udar_oh_coda.py`` l. 27 is never called), SGD momentum 0.9 with weight decay
  1e-5 on the network (``network.py`` ll. 459-462), classifier heads at lr 1e-4 without weight decay
  (``network.py`` ll. 447-456; ``head_lr_mult = 1e-4 / 3e-3 = 1/30``), batch 16 per domain (l. 90), 20 epochs
  (``--pretrain_epoch`` l. 81; ``train_udar_oh_coda.py`` ll. 210-213: the whole training), memory momentum
  0.95 (``shells/run_coda.sh`` l. 17).
* ``cluster_num`` per dataset (:attr:`CoDA.dataset_profiles`; ``cluster_num_list = [c, 2c, 3c, 4c]``,
  l. 167): Office-Home 100 (``shells/run_coda.sh`` l. 2), Office-31 50 (commit 304dc94, ``run_coda.sh`` l. 2,
  commented out since), image_CLEF (12 classes) 12 (same file, l. 3), Adaptiope (123 classes) 100 (l. 5).
  No DomainNet script exists; for the 7-class ``domainnet`` configuration (also PACS and digits) we apply the
  rule of the smallest official dataset, image_CLEF: ``cluster_num`` = the class count, so 7 (28 clusters at
  the finest granularity; the Office-Home value would put 400 clusters on a few thousand images).
* ``digits`` (24 epochs) and ``features`` (30 epochs): the shared schedule of the profile, the official
  relative settings: head lr ratio 1/30, no weight decay on the heads, memory momentum 0.95, the dataset's
  ``cluster_num``; ``features`` without a ``method_profile`` (custom data) keeps ``cluster_num = 50``.

Forward mode: each domain goes through the encoder on its own (``Trainer/trainer_coda.py`` ll. 68, 72:
``model(inputs_src1, head='src')`` then ``model(inputs_tar1, head='tgt')``), so BatchNorm normalises each
domain by its own batch (``joint_forward=False``).

Memory initialisation: one augmented view per image through the network in eval mode
(``memory_init="view"``), as the official ``recompute_memory`` (``utils/utils.py`` ll. 603-621:
``net.eval()``, the training loader's dataset with its random-crop + flip transform, ``data_clus.py``
ll. 138-143) does before the first epoch (``Trainer/trainer_coda.py`` ll. 19-23). ``"clean"`` uses the
clean inputs.

Deviations: the joint k-means uses our faiss block (niter 40, spherical) and the per-domain refinement a
40-step spherical Lloyd iteration in torch (official: faiss with ``init_centroids``); an epoch is
``ceil(max(N_A, N_B) / B)`` paired steps (official: one pass over the source loader, the target cycled);
the embedding is our shared encoder head (official: ResNet-50 with its ``fc`` replaced by 2048 -> 512 and L2
normalisation, ``resnet.py`` ll. 153, 195-196); source / target become A / B (both unlabeled), nothing else is
needed for U²CDR.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from u2cdr_bench.blocks.detector import cluster_spread, nearest_distance
from u2cdr_bench.blocks.kmeans import kmeans
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Choice, Range, Space

__all__ = ["CoDA", "classifier_alignment", "iss_loss", "iss_target", "spherical_lloyd"]


def iss_target(memory_feats: torch.Tensor, weight: torch.Tensor, tau: float = 0.01) -> torch.Tensor:
    """ISS soft target ``softmax(m W^T / tau)`` ``[B, K]`` (no gradient).

    ``memory_feats``: ``[B, D]`` memory entries of the batch; ``weight``: ``[K, D]`` classifier weights.
    """
    with torch.no_grad():
        return F.softmax(memory_feats @ weight.t() / tau, dim=1)


def iss_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft-target cross-entropy ``-mean_i sum_k t_ik log softmax(logits_i)_k`` (ISS, module docstring)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def classifier_alignment(
    feats: torch.Tensor, weight_a: torch.Tensor, weight_b: torch.Tensor, softmax: bool = False
) -> torch.Tensor:
    """CCA on one batch: ``mean_i ||W^A f_i - W^B f_i||_1`` (``softmax=True``: on the softmax outputs)."""
    out_a = feats @ weight_a.t()
    out_b = feats @ weight_b.t()
    if softmax:
        out_a, out_b = out_a.softmax(dim=1), out_b.softmax(dim=1)
    return (out_a - out_b).abs().sum(dim=1).mean()


@torch.no_grad()
def spherical_lloyd(x: torch.Tensor, init: torch.Tensor, niter: int = 40) -> torch.Tensor:
    """Spherical k-means from ``init`` ``[K, D]`` on ``x`` ``[N, D]``: assign by max cosine, centroid =
    normalised mean; an empty cluster keeps its previous centroid. Returns ``[K, D]`` unit centroids."""
    xn = F.normalize(x.float(), dim=1)
    c = F.normalize(init.float(), dim=1)
    for _ in range(niter):
        assign = (xn @ c.t()).argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, xn)
        counts = torch.bincount(assign, minlength=len(c))
        new = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), c)
        if torch.equal(new, c):
            break
        c = new
    return c


@register_method
class CoDA(EncoderMethod):
    """CoDA (Wang et al., AAAI 2023); see the module docstring for the losses and deviations."""

    name = "coda"
    summary = "CoDA (AAAI'23): in-domain self-matching supervision + cross-domain classifier alignment."
    citation = (
        "Xu Wang, Dezhong Peng, Ming Yan, Peng Hu. Correspondence-Free Domain Alignment for Unsupervised "
        "Cross-Domain Image Retrieval. AAAI 2023."
    )
    distance = "euclidean"
    needs_num_classes = False
    hparam_space: ClassVar[dict[str, Space]] = {
        "cluster_num": Range(1),
        "granularities": Range(1),
        "target_tau": Range(0, open_low=True),
        "lambda_cross_domain": Range(0),
        "head_lr_mult": Range(0),
        "detector_granularity": Range(0),
        "memory_init": Choice("clean", "view"),
    }
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "cluster_num": 100,
        "joint_forward": False,
        "memory_init": "view",
        "lr_schedule": "cosine",
        "granularities": 4,
        "memory_momentum": 0.95,
        "target_tau": 0.01,
        "lambda_cross_domain": 0.01,
        "cross_domain_softmax": False,
        "head_lr_mult": 1.0 / 30.0,
        "kmeans_niter": 40,
        "detector_granularity": 0,
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        # train_udar_oh_coda.py ll. 81, 90, 100; network.py ll. 459-462 (module docstring)
        "paper": {"lr": 3e-3, "lr_schedule": "constant", "batch_size": 16, "weight_decay": 1e-5},
        "digits": {"epochs": 24},
        "features": {"epochs": 30, "cluster_num": 50},
    }
    dataset_profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "officehome": {"cluster_num": 100},  # shells/run_coda.sh l. 2
        "office31": {"cluster_num": 50},  # shells/run_coda.sh l. 2 at commit 304dc94
        "domainnet": {"cluster_num": 7},  # no script: image_CLEF's rule cluster_num = classes (l. 3 there)
    }

    def _init_heads(self, mem_a: torch.Tensor, mem_b: torch.Tensor) -> tuple[nn.ModuleList, nn.ModuleList]:
        """Classifiers of both domains initialised from joint-then-per-domain spherical k-means."""
        hp = self.hp
        dim = mem_a.shape[1]
        heads_a, heads_b = nn.ModuleList(), nn.ModuleList()
        joint = torch.cat([mem_a, mem_b]).numpy()
        sizes = []
        for g in range(int(hp["granularities"])):
            k = int(hp["cluster_num"]) * (g + 1)
            km = kmeans(joint, k, seed=self.ctx.seed, niter=int(hp["kmeans_niter"]), nredo=1, spherical=True)
            init = torch.from_numpy(km.centroids)
            for mem, heads in ((mem_a, heads_a), (mem_b, heads_b)):
                lin = nn.Linear(dim, km.k, bias=False)
                with torch.no_grad():
                    lin.weight.copy_(spherical_lloyd(mem, init, int(hp["kmeans_niter"])))
                heads.append(lin)
            sizes.append(km.k)
        self.info["cluster_num_list"] = sizes
        return heads_a.to(self.ctx.device), heads_b.to(self.ctx.device)

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        hp = self.hp
        dev = self.ctx.device
        src = str(hp["memory_init"])
        mem_a = self.init_memory(domain_a, float(hp["memory_momentum"]), src)
        mem_b = self.init_memory(domain_b, float(hp["memory_momentum"]), src)
        self.heads_a, self.heads_b = self._init_heads(mem_a.bank, mem_b.bank)
        mem_a.bank, mem_b.bank = mem_a.bank.to(dev), mem_b.bank.to(dev)
        n_g = len(self.heads_a)
        tau = float(hp["target_tau"])
        lam = float(hp["lambda_cross_domain"])
        soft = bool(hp["cross_domain_softmax"])

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            ia, ib = idx_a.to(dev), idx_b.to(dev)
            # official: one pass per domain (per-domain BN batches), ``joint_forward=False``
            fa, fb = self.forward_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
            iss_a = iss_b = cca = fa.new_zeros(())
            for ha, hb in zip(self.heads_a, self.heads_b, strict=True):
                iss_a = iss_a + iss_loss(ha(fa), iss_target(mem_a.bank[ia], ha.weight, tau))
                iss_b = iss_b + iss_loss(hb(fb), iss_target(mem_b.bank[ib], hb.weight, tau))
                if lam > 0:
                    cca = cca + lam * (
                        classifier_alignment(fb, ha.weight, hb.weight, soft)
                        + classifier_alignment(fa, ha.weight, hb.weight, soft)
                    )
            iss_a, iss_b, cca = iss_a / n_g, iss_b / n_g, cca / n_g
            mem_a.update(ia, fa.detach())
            mem_b.update(ib, fb.detach())
            loss = iss_a + iss_b + cca
            return loss, {
                "iss_a": float(iss_a.detach()),
                "iss_b": float(iss_b.detach()),
                "cca": float(cca.detach()),
            }

        heads = [p for h in (self.heads_a, self.heads_b) for p in h.parameters()]
        self.train_stage(
            "coda",
            domain_a,
            domain_b,
            self.epochs(int(hp["epochs"])),
            step,
            extra_param_groups=[{"params": heads, "lr_mult": float(hp["head_lr_mult"]), "weight_decay": 0.0}],
        )
        self.info["detector_prototypes"] = "query-domain classifier weights"

    def query_prototypes(self) -> np.ndarray | None:
        """``[K, D]`` weights of the query domain's classifier used as the detector's prototypes (or None)."""
        heads = getattr(self, "heads_a", None)
        if heads is None:
            return None
        g = min(int(self.hp["detector_granularity"]), len(heads) - 1)
        return heads[g].weight.detach().cpu().numpy().astype(np.float64)

    def detect_private(self, query_feats: np.ndarray, gallery_feats: np.ndarray) -> np.ndarray:
        """Generic detector (paper-spec §4.2) with the query-domain classifiers as the prototype set.

        Query ``i`` belongs to class ``c_i = argmax_c w_c . f_i``; ``D_c`` is the largest distance of a query
        of class ``c`` to ``w_c`` (hyper-parameter ``detector_threshold="radius"``, the default of every
        method) or between two queries of class ``c`` (``"diameter"``); private iff
        ``min_j d(f_i, g_j) > D_{c_i}``. Before :meth:`fit`, the k-means detector of the base class.
        """
        protos = self.query_prototypes()
        if protos is None:
            return super().detect_private(query_feats, gallery_feats)
        q = np.asarray(query_feats, dtype=np.float64)
        g = np.asarray(gallery_feats, dtype=np.float64)
        assign = (q @ protos.T).argmax(axis=1)
        spread = cluster_spread(
            q, assign, protos, self.distance, str(self.hp.get("detector_threshold", "radius"))
        )
        return nearest_distance(q, g, self.distance) > spread[assign]
