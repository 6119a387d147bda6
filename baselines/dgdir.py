"""DGDIR baseline (DG-UCDIR): Conghui Hu, Can Zhang, Gim Hee Lee, "Unsupervised Feature Representation
Learning for Domain-generalized Cross-domain Image Retrieval", ICCV 2023, pp. 11016-11025 (official code
github.com/conghui1002/DG-UCDIR at 38635d8: ``main_dgucdir.py``, ``moco/builder.py``, ``utils/domainnet.py``,
``scripts/train.sh``; line numbers below refer to that commit).

**Domain augmentation** (``utils/domainnet.py`` ll. 142-196; :mod:`u2cdr_bench.blocks.fourier`). Each
training image gets two augmented views; each view is Fourier-mixed with a random partner image drawn from
the pooled training images of *both* domains: amplitude interpolation ``A = (1 - lam) A(x) + lam A(x')``,
``lam ~ U(0, 1)``, then low-frequency phase interpolation inside a centred square of side 50/224 of the image
with ratio ``mu ~ U(0, 0.4)`` (``train.sh`` ll. 22-24). Beside each mixed ("rgb") view, the **phase image**
of the unmixed view (constant amplitude, grey-level phase, ``domainnet.py`` ll. 146-149, 192-194) is the
domain-invariant proxy.

**Cross-domain contrast with the phase proxy** (``moco/builder.py`` ll. 281-388). A MoCo query encoder
(gradient) and a momentum key encoder (0.999) encode the phase view ``ph`` and the mixed view ``rgb`` of both
augmentations; each domain has a phase memory ``M^ph_d`` and an rgb memory ``M^rgb_d`` (``--multi_q``),
negatives exclude the sample's own entries. With ``q^ph, q^rgb`` the query projections (the 128-d output of
the MLP head) of view 1 and ``k^ph, k^rgb`` the key projections of view 2, tau = 0.2, and ``NCE(q, k; M)``
the InfoNCE of :func:`baselines.ucdir.keyed_nce`:

    L_con = 0.5 * [NCE(q^ph, k^ph; M^ph) + NCE(q^rgb, k^rgb; M^rgb)       (intra-type)
                 + NCE(q^ph, k^rgb; M^ph) + NCE(q^rgb, k^ph; M^rgb)]      (cross: image <-> phase proxy)

(``train.sh`` ll. 27-30; ``main_dgucdir.py`` ll. 493-511: the CE means run over the A+B batch; the logits
the code also forms on the 2048-d features, ``builder.py`` ll. 364-374, are left out of the loss there).

**Cluster loss and the feature space** (``main_dgucdir.py`` ll. 381-415, 541-583; ``builder.py``
ll. 232-261, 390-397). After the warm-up (20 of 200 epochs, ``train.sh`` ll. 9, 25) k-means with ``K``
clusters runs on the **pooled 2048-d backbone features** (``extra_outputs['q']``: layer-4 output, global
average pooled and L2-normalised, ``builder.py`` ll. 286-287, ``utils/torchvision_wrappers.py``) of the
query encoder in eval mode on the clean **per-channel RGB phase images** (``domainnet.py::phase_img_getter``
ll. 129-140: FFT over each colour channel, unlike the grey phase of the training views; ``train_val`` branch
ll. 248-253) of both domains pooled, giving normalised centroids ``C`` and a cluster ``c_i`` per image. The
cluster loss ``L_clu = CE(h.C^T, c_i)`` (no temperature, ``builder.py`` l. 257) applies to the backbone
features ``h`` of the phase and the mixed query views with weight 0.1 (``train.sh`` l. 26). Objective:
``L_con + 0.1 L_clu``. Retrieval uses the same pooled backbone features of the clean images
(``main_dgucdir.py`` ll. 278-294) with cosine similarity (``distance="cosine"``).

We follow this wherever the encoder has a trainable backbone (``feature_space="auto"``, finetune mode and
the small CNN of digits: ``self.encoder.backbone``'s pooled output). **In features mode the backbone is
frozen**, which forces a change: a cluster loss on frozen features has no gradient, and retrieving with them
returns the input features (the ``pretrained`` method). So there the head's normalised output serves for
clustering, the cluster loss and retrieval alike (``feature_space="head"``, recorded in
``info["feature_space"]``), and the clustering runs on the cached *grey* phase views (``"phase"``: the
features cache holds no per-channel phase images of the clean inputs).

Views: image mode (``domain.kind == "image"``) does the Fourier mixing for real with ``torch.fft`` on the
image tensors of both domains (partners: clean images, brought to the view's shape). Features mode uses the
pre-extracted extra view sets ``"fourier"`` (mixed views) and ``"phase"`` (phase images) when present; a
missing set falls back to the domain's default views, noted in ``self.info["view_fallback"]``.

Forward mode: one query pass over the phase and mixed views of both domains (``builder.py`` ll. 281-283),
one key pass likewise (ll. 327-330); with one GPU and ``--bn-splits`` left at 0 (``config.py`` l. 84,
``builder.py`` l. 35) the key encoder's BatchNorm sees the whole key batch (``key_bn_splits=1``).

Settings: profile ``paper``: lr 2e-4 cosine (``train.sh`` l. 8), batch 64 split over the two domains, i.e. 32
per domain (``train.sh`` l. 4, ``main_dgucdir.py`` l. 198), 200 epochs, warm-up 20, key momentum 0.999, ``K``
from the class counts (``train.sh`` l. 19: 7 for DomainNet-7). Only a DomainNet script is released and the
README runs PACS with it too (changing the domain pair), so no value differs per dataset. ``digits`` 24 epochs
/ warm-up 3, ``features`` 30 / warm-up 3, key momentum 0.99, the shared schedule of the profile.

Deviations: ``needs_num_classes``: the pooled clustering uses ``K = max(C^A, C^B)`` (the official code has one
label set; ``max`` equals the size of the union in the close-set, partial and open-set protocols).
Full-dataset slot memories (one per domain and view type, replaced by the newest key) stand in for the
official FIFO queues of 5120 keys (``train.sh`` l. 14, ~ one DomainNet 7-class domain); like the official
queues they start as random unit vectors (``memory_init="random"``, ``builder.py`` ll. 55-61;
``"features"``: the initial key encoder's features of the clean images / phase images, as UCDIR). The
embedding head is the shared encoder head (finetune with a MoCo v2 checkpoint: MoCo's 2048-2048-128 MLP,
loaded as ``main_dgucdir.py`` ll. 111-132 does). Cosine lr schedule per step (official: per epoch).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from u2cdr_bench.blocks.fourier import (
    PHASE_AMPLITUDE,
    PHASE_MIX_FRACTION,
    fourier_augment,
    match_partner,
    phase_only_image,
)
from u2cdr_bench.blocks.kmeans import kmeans
from u2cdr_bench.blocks.losses import prototype_nce
from u2cdr_bench.blocks.memory import MemoryBank
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import register_method
from u2cdr_bench.methods.common import EncoderMethod
from u2cdr_bench.methods.hparams import Choice, Range, Space
from u2cdr_bench.training import encode

from .ucdir import encode_keys, keyed_nce, make_key_encoder, momentum_update, scaled_milestone

__all__ = ["DGDIR"]

#: The four contrastive terms (official ``--contra_*`` weights): query type, key type.
_CONTRAST_TERMS = ("contra_intra_phase", "contra_intra_rgb", "contra_cross_phase", "contra_cross_rgb")


@torch.no_grad()
def _encode_tensor(
    module: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 512
) -> torch.Tensor:
    """Normalised eval-mode features ``[N, D]`` of a tensor of inputs (CPU result)."""
    was = module.training
    module.eval()
    out = [F.normalize(module(x[s : s + batch].to(device)), dim=1).cpu() for s in range(0, len(x), batch)]
    module.train(was)
    return torch.cat(out)


@register_method
class DGDIR(EncoderMethod):
    """DG-UCDIR (Hu, Zhang & Lee, ICCV 2023); see the module docstring for the losses and deviations."""

    name = "dgdir"
    summary = (
        "DGDIR (ICCV'23): Fourier amplitude/phase domain augmentation + contrast with phase-image proxies."
    )
    citation = (
        "Conghui Hu, Can Zhang, Gim Hee Lee. Unsupervised Feature Representation Learning for "
        "Domain-generalized Cross-domain Image Retrieval. ICCV 2023, pp. 11016-11025."
    )
    distance = "cosine"
    needs_num_classes = True
    views: ClassVar[tuple[str, ...]] = ("clean", "fourier", "phase")
    hparam_space: ClassVar[dict[str, Space]] = {
        "aug_alpha": Range(0, 1),
        "hpf_alpha": Range(0, 1),
        "hpf_fraction": Range(0, 1, open_low=True),
        "phase_amplitude": Range(0, open_low=True),
        "contra_intra_phase": Range(0),
        "contra_intra_rgb": Range(0),
        "contra_cross_phase": Range(0),
        "contra_cross_rgb": Range(0),
        "cluster_loss_w": Range(0),
        "memory_init": Choice("random", "features"),
        "feature_space": Choice("auto", "backbone", "head"),
        "key_bn_splits": Range(1),
    }
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "warmup_epoch": 20,
        "tau": 0.2,
        "moco_m": 0.999,
        "aug_alpha": 1.0,
        "hpf_alpha": 0.4,
        "hpf_fraction": PHASE_MIX_FRACTION,
        "phase_amplitude": PHASE_AMPLITUDE,
        "contra_intra_phase": 0.5,
        "contra_intra_rgb": 0.5,
        "contra_cross_phase": 0.5,
        "contra_cross_rgb": 0.5,
        "cluster_loss_w": 0.1,
        "memory_init": "random",
        "feature_space": "auto",
        "key_bn_splits": 1,
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"batch_size": 32},  # train.sh l. 4: 64 over two domains (main_dgucdir.py l. 198)
        "digits": {"epochs": 24, "warmup_epoch": 3, "moco_m": 0.99},
        "features": {"epochs": 30, "warmup_epoch": 3, "moco_m": 0.99},
    }

    # ----- views ------------------------------------------------------------------------------------
    def _fourier_views(
        self, dom: UnlabeledDomain, idx: torch.Tensor, pool: tuple[UnlabeledDomain, UnlabeledDomain]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mixed view, phase view)`` of samples ``idx`` of ``dom``."""
        hp = self.hp
        if dom.kind == "image":
            x = self.view(dom, idx)
            n_a, n_b = pool[0].n, pool[1].n
            pick = torch.randint(n_a + n_b, (len(idx),), generator=self.generator)
            in_a = pick < n_a
            partner = torch.empty_like(x)
            if bool(in_a.any()):
                partner[in_a] = match_partner(pool[0].clean(pick[in_a]), x)
            if bool((~in_a).any()):
                partner[~in_a] = match_partner(pool[1].clean(pick[~in_a] - n_a), x)
            return fourier_augment(
                x,
                partner,
                self.generator,
                alpha=float(hp["aug_alpha"]),
                phase_alpha=float(hp["hpf_alpha"]),
                phase_fraction=float(hp["hpf_fraction"]),
                phase_amplitude=float(hp["phase_amplitude"]),
            )
        mixed = (
            dom.view_set("fourier", idx, self.generator)
            if dom.has_view_set("fourier")
            else self.view(dom, idx)
        )
        phase = (
            dom.view_set("phase", idx, self.generator) if dom.has_view_set("phase") else self.view(dom, idx)
        )
        return mixed, phase

    def _clean_phase(self, dom: UnlabeledDomain, per_channel: bool = False) -> torch.Tensor:
        """Inputs standing for the clean phase images of every sample of ``dom``.

        Image mode: :func:`~u2cdr_bench.blocks.fourier.phase_only_image` of the clean images, of the grey
        level (the training views' phase, ``domainnet.py`` ll. 146-149) or per colour channel
        (``per_channel``: ``phase_img_getter`` ll. 129-140, what the official clustering sees). Features mode:
        the cached ``"phase"`` view set (grey phase of augmented views), else the clean features.
        """
        idx = torch.arange(dom.n)
        if dom.kind == "image":
            amp = float(self.hp["phase_amplitude"])
            return phase_only_image(dom.clean(idx), amplitude=amp, gray=not per_channel)
        if dom.has_view_set("phase"):
            return dom.view_set("phase", idx, self.generator)
        return dom.clean(idx)

    # ----- feature spaces ---------------------------------------------------------------------------
    def feature_space(self) -> str:
        """``"backbone"`` (official: pooled backbone features) when the encoder has a trainable backbone,
        else ``"head"`` (features mode: the frozen backbone forces the head's output); hyper-parameter
        ``feature_space`` (``auto`` / ``backbone`` / ``head``)."""
        choice = str(self.hp["feature_space"])
        if choice not in ("auto", "backbone", "head"):
            raise UserError(
                f"Hyper-parameter feature_space of method dgdir must be 'auto', 'backbone' or 'head', "
                f"got {choice!r}."
            )
        backbone = getattr(self.encoder, "backbone", None)
        has_backbone = backbone is not None and hasattr(self.encoder, "head")
        if choice == "auto":
            trainable = has_backbone and any(p.requires_grad for p in backbone.parameters())
            return "backbone" if trainable else "head"
        if choice == "backbone" and not has_backbone:
            raise UserError(
                "Method dgdir: feature_space='backbone' needs an encoder with a backbone and a head."
            )
        return choice

    def cluster_module(self) -> nn.Module:
        """The module whose normalised output is clustered and retrieved: the backbone or the encoder."""
        return self.encoder.backbone if self.feature_space() == "backbone" else self.encoder

    def query_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, h)``: normalised head projections ``[B, D]`` (the contrastive queries) and normalised
        clustering features ``[B, D']`` (pooled backbone output, or ``q`` itself in the head space)."""
        x = x.to(self.ctx.device)
        if self.feature_space() == "backbone":
            h = self.encoder.backbone(x)
            return F.normalize(self.encoder.head(h), dim=1), F.normalize(h, dim=1)
        q = self.features(x)
        return q, q

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        """Retrieval features: normalised eval-mode output of :meth:`cluster_module` on the clean inputs
        (official: the pooled backbone features, ``main_dgucdir.py`` ll. 278-294)."""
        return encode(self.cluster_module(), domain).numpy().astype(np.float32, copy=True)

    # ----- training ---------------------------------------------------------------------------------
    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        hp = self.hp
        if self.ctx.num_classes is None:
            raise UserError("Method dgdir needs the true class counts of both domains (ctx.num_classes).")
        k = max(int(c) for c in self.ctx.num_classes)
        dev = self.ctx.device
        scale = self.ctx.epochs_scale
        epochs = self.epochs(int(hp["epochs"]))
        warmup = scaled_milestone(int(hp["warmup_epoch"]), scale)
        tau = float(hp["tau"])
        pool = (domain_a, domain_b)
        doms = {"a": domain_a, "b": domain_b}

        fallback = [
            f"{d.name}: no '{s}' view set, default views used"
            for d in pool
            if d.kind != "image"
            for s in ("fourier", "phase")
            if not d.has_view_set(s)
        ]
        space = self.feature_space()
        self.info.update(
            {"num_clusters": k, "warmup_epoch": warmup, "epochs": epochs, "feature_space": space}
        )
        self.info["views"] = (
            "fourier mixing on images (torch.fft)" if domain_a.kind == "image" else "extra view sets"
        )
        if fallback:
            self.info["view_fallback"] = fallback

        self.key_encoder = make_key_encoder(self.encoder)
        banks: dict[tuple[str, str], MemoryBank] = {}
        dim = int(
            _encode_tensor(self.encoder, domain_a.clean(torch.arange(min(2, domain_a.n))), dev).shape[1]
        )
        for key, dom in doms.items():
            if hp["memory_init"] == "random":  # official: queues of random unit vectors
                init_ph = torch.randn(dom.n, dim, generator=self.generator)
                init_rgb = torch.randn(dom.n, dim, generator=self.generator)
            elif hp["memory_init"] == "features":
                init_ph = _encode_tensor(self.key_encoder, self._clean_phase(dom), dev)
                init_rgb = self.encode_all(dom, self.key_encoder)
            else:
                raise UserError(
                    f"Hyper-parameter memory_init of method dgdir must be 'random' or 'features', "
                    f"got {hp['memory_init']!r}."
                )
            banks[(key, "ph")] = MemoryBank(init_ph.to(dev), 0.0)
            banks[(key, "rgb")] = MemoryBank(init_rgb.to(dev), 0.0)
        clusters: dict[str, Any] = {}

        phase_inputs: dict[int, torch.Tensor] = {}

        def clustering_inputs(i: int) -> torch.Tensor:
            """Per-channel clean phase images of pool domain ``i``; image mode computes them once (they do
            not change), features mode draws its cached phase views anew each time (as before)."""
            if pool[i].kind != "image":
                return self._clean_phase(pool[i], per_channel=True)
            if i not in phase_inputs:
                phase_inputs[i] = self._clean_phase(pool[i], per_channel=True)
            return phase_inputs[i]

        def on_epoch_start(epoch: int) -> None:
            if epoch < warmup:
                return
            # official: eval-mode query encoder, per-channel phase of the clean images (main ll. 253, 381)
            module = self.cluster_module()
            feats = [_encode_tensor(module, clustering_inputs(i), dev) for i in range(len(pool))]
            km = kmeans(torch.cat(feats).numpy(), k, seed=self.ctx.seed)
            assign = torch.from_numpy(km.assign).to(dev)
            clusters["centroids"] = F.normalize(torch.from_numpy(km.centroids), dim=1).to(dev)
            clusters["a"], clusters["b"] = assign[: domain_a.n], assign[domain_a.n :]

        w = {name: float(hp[name]) for name in _CONTRAST_TERMS}

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            idxs = {"a": idx_a, "b": idx_b}
            views = {
                key: (self._fourier_views(doms[key], i, pool), self._fourier_views(doms[key], i, pool))
                for key, i in idxs.items()
            }
            # query: [ph_a, ph_b, rgb_a, rgb_b] of view 1; keys: the same of view 2
            xq = torch.cat([views["a"][0][1], views["b"][0][1], views["a"][0][0], views["b"][0][0]]).to(dev)
            xk = torch.cat([views["a"][1][1], views["b"][1][1], views["a"][1][0], views["b"][1][0]]).to(dev)
            q, hq = self.query_forward(xq)  # one joint pass (builder.py ll. 281-283)
            momentum_update(self.encoder, self.key_encoder, float(hp["moco_m"]))
            kf = encode_keys(self.key_encoder, xk, self.generator, splits=int(hp["key_bn_splits"]))
            n_a, n_b = len(idx_a), len(idx_b)
            cut = [0, n_a, n_a + n_b, 2 * n_a + n_b, 2 * (n_a + n_b)]
            qs = {("a", "ph"): q[cut[0] : cut[1]], ("b", "ph"): q[cut[1] : cut[2]]}
            qs.update({("a", "rgb"): q[cut[2] : cut[3]], ("b", "rgb"): q[cut[3] : cut[4]]})
            ks = {("a", "ph"): kf[cut[0] : cut[1]], ("b", "ph"): kf[cut[1] : cut[2]]}
            ks.update({("a", "rgb"): kf[cut[2] : cut[3]], ("b", "rgb"): kf[cut[3] : cut[4]]})
            terms: dict[str, list[torch.Tensor]] = {name: [] for name in w}
            for key in ("a", "b"):
                i = idxs[key].to(dev)
                qp, qr, kp, kr = qs[(key, "ph")], qs[(key, "rgb")], ks[(key, "ph")], ks[(key, "rgb")]
                # the memories as they were before this step: their refresh waits for the optimiser step
                mp, mr = banks[(key, "ph")].bank, banks[(key, "rgb")].bank
                terms["contra_intra_phase"].append(keyed_nce(qp, kp, mp, i, tau, reduction="none"))
                terms["contra_intra_rgb"].append(keyed_nce(qr, kr, mr, i, tau, reduction="none"))
                terms["contra_cross_phase"].append(keyed_nce(qp, kr, mp, i, tau, reduction="none"))
                terms["contra_cross_rgb"].append(keyed_nce(qr, kp, mr, i, tau, reduction="none"))
            info: dict[str, float] = {}
            loss = q.new_zeros(())
            for name, parts in terms.items():
                value = torch.cat(parts).mean()
                loss = loss + w[name] * value
                info[name] = float(value.detach())
            if clusters and epoch >= warmup:
                feats = hq  # [ph_a, ph_b, rgb_a, rgb_b] in the clustering space (builder.py ll. 390-397)
                own = torch.cat([clusters["a"][idx_a.to(dev)], clusters["b"][idx_b.to(dev)]])
                clu = prototype_nce(feats, clusters["centroids"], torch.cat([own, own]), tau=1.0)
                loss = loss + float(hp["cluster_loss_w"]) * clu
                info["cluster"] = float(clu.detach())

            def refresh() -> None:
                for key in ("a", "b"):
                    i = idxs[key].to(dev)
                    banks[(key, "ph")].update(i, ks[(key, "ph")])
                    banks[(key, "rgb")].update(i, ks[(key, "rgb")])

            self.after_step(refresh)
            return loss, info

        self.train_stage("dgdir", domain_a, domain_b, epochs, step, on_epoch_start=on_epoch_start)
