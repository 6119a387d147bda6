"""The UEM method: IDSE (stage 1) then CDSM (stage 2), and UEM's own open-set detector (paper-spec §2).

See :class:`UEM` for the hyper-parameters and ``docs/uem.md`` for every reading of an ambiguous point.
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ...blocks.cluster_count import estimate_k as estimate_count
from ...blocks.cluster_count import estimator_names
from ...blocks.grl import DomainClassifier
from ...blocks.memory import MemoryBank
from ...blocks.merging import MERGE_RULES
from ...data.types import UnlabeledDomain
from ...errors import UserError
from .. import register_method
from ..base import FitContext
from ..common import EncoderMethod
from ..hparams import Choice, Range, Space
from .cdsm import SN2M_UNMERGED, adversarial_loss, nn_match_loss, sn2m_loss, sn2m_targets, spr_loss
from .detector import uem_private_detector
from .idse import alpha_ramp, idse_domain_loss
from .prototypes import PrototypeStructure, build_structure

__all__ = ["UEM"]

#: The range or choices of every UEM key (``lr``, ``batch_size``, ``tau``, ``memory_momentum``, ``kmeans_*``,
#: ``elbow_k_max`` and ``disc_hidden`` are in :data:`u2cdr_bench.methods.hparams.SHARED`; ``bool`` keys need
#: none). ``elbow_k_max >= elbow_k_min`` is checked by :meth:`UEM.check_hparams`.
_SPACE: dict[str, Space] = {
    "ince_negatives": Choice("bank", "batch"),
    "nce_reduction": Choice("mean", "sum"),
    "dal_reduction": Choice("mean", "sum"),
    "reestimate_k": Choice("every", "stage", "once"),
    "adv_mode": Choice("grl", "flip"),
    "sn2m_mode": Choice("switch", "nn"),
    "sn2m_negatives": Choice("memory", "batch", "encoded"),
    "sn2m_unmerged": Choice(*SN2M_UNMERGED),
    "merge_rule": Choice(*MERGE_RULES),
    "k_estimator": Choice(*estimator_names()),
    "k_features": Choice("memory", "input"),
    "frozen_bn": Choice("batch", "running"),
    "detector_spread": Choice("loo", "all"),
    "stage2_memory_init": Choice("continue", "reencode"),
    "memory_bn": Choice("batch", "running"),
    "alpha_schedule": Choice("ramp", "one"),
    "idse_epochs": Range(1),
    "cdsm_epochs": Range(1),
    "recluster_every": Range(1),
    "stage2_recluster": Range(0),
    "cluster_alpha_min": Range(0, 1),
    "elbow_k_min": Range(1),
    "grl_lambda": Range(0),
    "cdsm_lr_scale": Range(0),
}


#: The readings the defaults replaced on 2026-12-04, by measurement (docs/uem.md, "The defaults"): Eq. 6
#: over the whole memory bank (the text's "all other instances"), the paper's Elbow, Eq. 9's one global
#: threshold (as printed), SN2M's instances from B's memory bank, and Eq. 17 as printed for a sample
#: without a merged partner. ``uem`` with these five overrides is the UEM of the records made before.
FORMER_DEFAULTS: dict[str, str] = {
    "ince_negatives": "bank",
    "k_estimator": "elbow",
    "merge_rule": "global",
    "sn2m_negatives": "memory",
    "sn2m_unmerged": "literal",
}


@register_method
class UEM(EncoderMethod):
    """UEM (Wang, Du, Zhu, NeurIPS 2024): unified, enhanced and matched semantic feature learning.

    Stage 1, IDSE (paper-spec §2.2), ``idse_epochs`` epochs: per-domain memory banks (Eq. 5), instance NCE
    per domain (Eq. 6), K-means prototypes per domain with Elbow K, translation + Hungarian matching + merge
    test (Eqs. 8–9) into ``P^{A'}``/``P^{B'}``, prototype NCE over the merged set (Eq. 7), progressive IPM
    (Eq. 10), SEL (Eq. 11); objective Eq. 12.
    Stage 2, CDSM (§2.3), ``cdsm_epochs`` epochs: frozen copy ``f_theta'``; domain-adversarial loss (Eq. 13),
    SPR (Eq. 14), SN2M (Eqs. 15–17); objective Eq. 18.
    Open-set detection (§2.6, Eqs. 25–27): :meth:`detect_private`.

    Hyper-parameters (``defaults`` = the ``paper`` profile; "#n" = paper-spec §7 item; docs/uem.md has the
    reasoning behind every reading). The five readings ``ince_negatives``, ``k_estimator``, ``merge_rule``,
    ``sn2m_negatives`` and ``sn2m_unmerged`` were chosen together by their measured effect over the 54
    development cells (digits and PACS, all pairs × 3 settings; docs/uem.md, "The defaults");
    :data:`FORMER_DEFAULTS` lists the readings they replaced (pass each as ``--hp KEY=VALUE``). Of the five,
    ``batch`` and ``encoded`` are the equations as printed; ``eigengap``, ``pair`` and ``skip`` are readings
    the paper does not print (paper-spec §2.2(c), §2.2(d), §2.3):

    ======================  =========  ==================================================================
    name                    default    meaning
    ======================  =========  ==================================================================
    tau                     0.07       temperature of Eqs. 6, 7, 11, 17 (§2.1)
    memory_momentum         0.99       beta of Eq. 5
    renormalize_memory      True       L2-renormalise memory entries after each update (#2)
    memory_bn               running    BatchNorm mode of the memory initialisation: ``running`` (eval mode,
                                       like ``embed``) or per-domain ``batch`` statistics (as in training)
    ince_negatives          batch      Eq. 6 denominator: the batch's memory entries j = 1..B as printed, or
                                       the whole memory ``bank`` (the text's "all other instances", #3)
    nce_reduction           mean       batch reduction of Eqs. 6-7 (printed as sums; ``sum``)
    idse_epochs             100        stage-1 epochs E (200 in profile ``domainnet``; §2.5)
    cdsm_epochs             50         stage-2 epochs (§2.5)
    recluster_every         1          stage-1 re-clustering cadence, epochs (#4)
    cluster_alpha_min       0.01       stage-1 clustering starts once alpha(e) >= this (#4)
    alpha_schedule          ramp       ``ramp`` = Eq. 10; ``one`` = alpha 1 from the first epoch, so the
                                       prototype terms act throughout IDSE as in PCS/PCL (a diagnosis knob,
                                       not the paper's method)
    elbow_k_min, _max       2, 100     candidate range of the K estimator (#4); also the detector's
    k_estimator             eigengap   the estimator of K (blocks.cluster_count: elbow, eigengap, gap,
                                       silhouette); ``elbow`` is the paper's rule (§2.2(c)), whose K
                                       follows its range (docs/uem.md, the K table)
    k_features              memory     K estimated on the memory ``bank`` at clusterings (per
                                       ``reestimate_k``) or once on the frozen ``input`` features
    reestimate_k            every      run the estimator at ``every`` clustering, once per ``stage``, ``once``
    merge_rule              pair       Eq. 9 per Hungarian pair (its two prototypes' nearest neighbours in
                                       their domains) or ``global`` (one threshold, as printed; §2.2(d))
    kmeans_niter, _nredo    20, 5      faiss K-means settings (UCDIR's; #4)
    normalize_prototypes    False      L2-normalise the prototypes used by the losses (#2)
    idse_merge              True       prototype merging in IDSE (False = ``uem-no-pm``)
    use_sel                 True       SEL term of Eq. 12 (False = ``uem-no-sel``)
    sel_detach_weights      False      stop the gradient through SEL's softmax weights (#6)
    adv_mode                grl        Eq. 13 game: gradient reversal, or ``flip`` (label flipping) (#7)
    grl_lambda              1.0        gradient-reversal coefficient
    disc_hidden             256        hidden width of the two-layer domain classifier (#7)
    dal_reduction           mean       batch reduction of Eq. 13 (printed as a sum over 2B)
    use_spr                 True       SPR of Eq. 14 (False = ``uem-no-spda``)
    sn2m_mode               switch     Eqs. 15-17, or ``nn``: plain cosine-NN positive (``uem-no-sn2m``, #20)
    sn2m_negatives          encoded    SN2M instances x^B_j: ``encoded`` = the current f_theta(x^B_j) as
                                       Eq. 17 writes it (re-encoded once per epoch), the ``memory`` bank,
                                       or the ``batch`` (#8)
    sn2m_unmerged           skip       Eq. 17 for a sample whose prototype has no merged partner: ``skip``
                                       (no SN2M term), ``literal`` or ``prototypes`` (prototype negatives
                                       only) (cdsm.SN2M_UNMERGED)
    cdsm_lr_scale           1.0        stage-2 learning rate / ``lr`` (fresh cosine schedule, #10)
    stage2_recluster        1          stage-2 re-clustering cadence, epochs; 0 = only at its start (#9)
    stage2_memory_update    True       keep updating the memory banks in stage 2 (#9)
    stage2_memory_init      continue   memory at the start of stage 2: ``continue``, or ``reencode`` (#9)
    frozen_bn               batch      BatchNorm of f_theta': ``batch`` statistics (running ones frozen),
                                       or ``running`` (eval mode)
    joint_forward           False      one forward pass over both domains' batches instead of one per
                                       domain (UCDIR; #11)
    detector_spread         loo        Eq. 25 threshold without the query itself (``loo``) or literal ``all``
    ======================  =========  ==================================================================

    Plus the optimiser settings of :data:`u2cdr_bench.methods.common.SCHEDULES` (``lr``, ``batch_size``,
    ``weight_decay``, ``sgd_momentum``), one fresh cosine schedule per stage (§7 #10).

    ``self.info`` after ``fit``: ``timings`` (seconds: ``init``, ``stage1``, ``stage2`` training without
    clustering, ``kmeans`` = Elbow + K-means + merging during fit, ``detector``), ``clusterings`` (K and
    merges of every clustering), ``idse_epochs``/``cdsm_epochs`` actually run, ``sn2m_agree`` and, after
    :meth:`detect_private`, ``detector``.
    """

    name: ClassVar[str] = "uem"
    summary: ClassVar[str] = "UEM (NeurIPS 2024): IDSE (IPM + SEL, merged prototypes) then CDSM (SPDA + SN2M)"
    citation: ClassVar[str] = (
        "Wang, Du, Zhu, 'Semantic Feature Learning for Universal Unsupervised Cross-Domain Retrieval', "
        "NeurIPS 2024"
    )
    needs_num_classes: ClassVar[bool] = False
    distance: ClassVar[str] = "euclidean"
    generic_detector: ClassVar[bool] = False  # UEM's own detector (Eqs. 25-27): no detector_threshold
    hparam_space: ClassVar[dict[str, Space]] = _SPACE
    defaults: ClassVar[dict[str, Any]] = {
        "tau": 0.07,
        "memory_momentum": 0.99,
        "renormalize_memory": True,
        "memory_bn": "running",
        "ince_negatives": "batch",
        "nce_reduction": "mean",
        "idse_epochs": 100,
        "cdsm_epochs": 50,
        "recluster_every": 1,
        "cluster_alpha_min": 0.01,
        "alpha_schedule": "ramp",
        "elbow_k_min": 2,
        "elbow_k_max": 100,
        "reestimate_k": "every",
        "k_estimator": "eigengap",
        "k_features": "memory",
        "merge_rule": "pair",
        "sn2m_unmerged": "skip",
        "kmeans_niter": 20,
        "kmeans_nredo": 5,
        "normalize_prototypes": False,
        "idse_merge": True,
        "use_sel": True,
        "sel_detach_weights": False,
        "adv_mode": "grl",
        "grl_lambda": 1.0,
        "disc_hidden": 256,
        "dal_reduction": "mean",
        "use_spr": True,
        "sn2m_mode": "switch",
        "sn2m_negatives": "encoded",
        "cdsm_lr_scale": 1.0,
        "stage2_recluster": 1,
        "stage2_memory_update": True,
        "stage2_memory_init": "continue",
        "frozen_bn": "batch",
        "joint_forward": False,
        "detector_spread": "loo",
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "domainnet": {"idse_epochs": 200},
        "digits": {
            "idse_epochs": 10,
            "cdsm_epochs": 1,
            "cdsm_lr_scale": 0.02,
            "normalize_prototypes": True,
            "elbow_k_max": 20,
            "reestimate_k": "stage",
            "kmeans_nredo": 1,
        },
        "features": {
            "idse_epochs": 40,
            "cdsm_epochs": 20,
            "cdsm_lr_scale": 0.1,
            "kmeans_nredo": 2,
            "reestimate_k": "stage",
        },
    }

    def __init__(self, ctx: FitContext, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, hparams)
        self.structure: PrototypeStructure | None = None
        self.bank_a: MemoryBank | None = None
        self.bank_b: MemoryBank | None = None
        self._pending: list[tuple[MemoryBank, torch.Tensor, torch.Tensor]] = []
        self._k: tuple[int, int] | None = None
        self._k_input: tuple[int, int] | None = None
        self._k_stage: int | None = None
        self._n_clusterings = 0
        self.info["timings"] = {"init": 0.0, "stage1": 0.0, "stage2": 0.0, "kmeans": 0.0, "detector": 0.0}
        self.info["clusterings"] = []

    # ----- checks --------------------------------------------------------------------------------
    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        """The cross-key rule of the Elbow range (each key's own range is in ``_SPACE``)."""
        if int(hp["elbow_k_max"]) < int(hp["elbow_k_min"]):
            raise UserError(
                f"Hyper-parameter elbow_k_max of method {cls.name} must be >= elbow_k_min "
                f"({hp['elbow_k_min']}), got {hp['elbow_k_max']}."
            )

    # ----- helpers -------------------------------------------------------------------------------
    def _encode_pair(
        self, xa: torch.Tensor, xb: torch.Tensor, module: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features of both batches, jointly (one pass) or per domain (``joint_forward``)."""
        if self.hp["joint_forward"]:
            f = self.features(torch.cat([xa, xb]), module)
            return f[: len(xa)], f[len(xa) :]
        return self.features(xa, module), self.features(xb, module)

    @torch.no_grad()
    def _memory_features(self, domain: UnlabeledDomain) -> torch.Tensor:
        """``[N, D]`` normalised features of the clean inputs for a memory bank (Eq. 5 initialisation).

        ``memory_bn="batch"``: the encoder in training mode over consecutive chunks of about ``batch_size``
        samples of one domain, i.e. with the same per-domain BatchNorm batch statistics as the features that
        Eq. 5 later writes into the bank (running statistics left untouched). ``"running"``: eval mode.
        """
        if self.hp["memory_bn"] == "running":
            return self.encode_all(domain)
        enc = self.encoder
        was_training = enc.training
        bns = [m for m in enc.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [
            (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
            for m in bns
        ]
        for m in bns:
            m.momentum = 0.0
        enc.train()
        n_chunks = max(1, -(-domain.n // int(self.hp["batch_size"])))
        out = [self.features(domain.clean(idx)) for idx in torch.arange(domain.n).chunk(n_chunks)]
        for m, (momentum, tracked) in zip(bns, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
        enc.train(was_training)
        return torch.cat(out).detach()

    def _new_banks(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        mom, renorm = float(self.hp["memory_momentum"]), bool(self.hp["renormalize_memory"])
        self.bank_a = MemoryBank(self._memory_features(domain_a), momentum=mom, renormalize=renorm)
        self.bank_b = MemoryBank(self._memory_features(domain_b), momentum=mom, renormalize=renorm)

    def _flush_memory(self) -> None:
        """Apply the memory updates (Eq. 5) queued by the last step, after its optimiser step."""
        for bank, idx, feats in self._pending:
            bank.update(idx, feats)
        self._pending = []

    def _estimate(self, x: np.ndarray, seed: int) -> int:
        """K of ``x`` ``[N, D]`` by the ``k_estimator`` (blocks.cluster_count), over elbow_k_min..k_max."""
        hp = self.hp
        est = estimate_count(
            x,
            hp["k_estimator"],
            seed=seed,
            k_min=int(hp["elbow_k_min"]),
            k_max=int(hp["elbow_k_max"]),
            niter=int(hp["kmeans_niter"]),
        )
        return int(est.k)

    def _input_counts(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """``k_features="input"``: K of each domain estimated once, on its clean inputs (frozen backbone
        features in features mode, pixels on digits), before any training (docs/uem.md, "Cluster counts")."""
        t0 = time.perf_counter()
        seed = int(self.ctx.seed) * 1000
        ks = []
        for side, d in enumerate((domain_a, domain_b)):
            x = d.clean(torch.arange(d.n)).reshape(d.n, -1).float().numpy()
            ks.append(self._estimate(x, seed + side))
        self._k_input = (ks[0], ks[1])
        self.info["k_input"] = list(self._k_input)
        self.info["timings"]["kmeans"] += time.perf_counter() - t0

    def _recluster(self, stage: int, epoch: int) -> None:
        """K-means (Elbow K per ``reestimate_k``) on both memory banks and merging (Eqs. 8–9)."""
        assert self.bank_a is not None and self.bank_b is not None
        hp = self.hp
        t0 = time.perf_counter()
        seed = int(self.ctx.seed) * 1000 + 7 * self._n_clusterings
        policy = hp["reestimate_k"]
        if hp["k_features"] == "input":
            assert self._k_input is not None
            self._k, self._k_stage = self._k_input, stage
        elif self._k is None or policy == "every" or (policy == "stage" and self._k_stage != stage):
            k_a = self._estimate(self.bank_a.bank.detach().cpu().numpy(), seed)
            k_b = self._estimate(self.bank_b.bank.detach().cpu().numpy(), seed + 1)
            self._k, self._k_stage = (k_a, k_b), stage
        self.structure = build_structure(
            self.bank_a.bank,
            self.bank_b.bank,
            self._k[0],
            self._k[1],
            seed=seed,
            niter=int(hp["kmeans_niter"]),
            nredo=int(hp["kmeans_nredo"]),
            normalize_prototypes=bool(hp["normalize_prototypes"]),
            merge_rule=hp["merge_rule"],
        )
        self._n_clusterings += 1
        self.info["clusterings"].append({"stage": stage, "epoch": epoch, **self.structure.summary()})
        self.info["timings"]["kmeans"] += time.perf_counter() - t0

    # ----- training ------------------------------------------------------------------------------
    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        timings = self.info["timings"]
        t0 = time.perf_counter()
        self._new_banks(domain_a, domain_b)
        timings["init"] += time.perf_counter() - t0
        if self.hp["k_features"] == "input":
            self._input_counts(domain_a, domain_b)

        k0 = timings["kmeans"]
        t0 = time.perf_counter()
        self._stage1(domain_a, domain_b)
        timings["stage1"] += time.perf_counter() - t0 - (timings["kmeans"] - k0)

        k0 = timings["kmeans"]
        t0 = time.perf_counter()
        self._stage2(domain_a, domain_b)
        timings["stage2"] += time.perf_counter() - t0 - (timings["kmeans"] - k0)
        self.encoder.eval()

    def _stage1(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """IDSE, Eq. 12, with alpha of Eq. 10 and (re-)clustering per ``recluster_every``."""
        hp = self.hp
        assert self.bank_a is not None and self.bank_b is not None
        total = self.epochs(int(hp["idse_epochs"]))
        self.info["idse_epochs"] = total
        state = {"alpha": 0.0, "last": -(10**9)}
        bank_a, bank_b = self.bank_a, self.bank_b
        tau = float(hp["tau"])
        loss_kw = {
            "tau": tau,
            "ince_negatives": hp["ince_negatives"],
            "nce_reduction": hp["nce_reduction"],
            "use_sel": bool(hp["use_sel"]),
            "sel_detach_weights": bool(hp["sel_detach_weights"]),
        }

        def on_epoch_start(epoch: int) -> None:
            self._flush_memory()
            state["alpha"] = 1.0 if hp["alpha_schedule"] == "one" else alpha_ramp(epoch, total)
            due = epoch - state["last"] >= int(hp["recluster_every"])
            if state["alpha"] >= float(hp["cluster_alpha_min"]) and due:
                self._recluster(stage=1, epoch=epoch)
                state["last"] = epoch

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            self._flush_memory()
            f_a, f_b = self._encode_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
            s = self.structure
            if s is None:
                pa = pb = aa = ab = None
            elif hp["idse_merge"]:
                pa, pb, aa, ab = s.merged_a, s.merged_b, s.assign_a_merged, s.assign_b_merged
            else:
                pa, pb, aa, ab = s.own_a, s.own_b, s.assign_a, s.assign_b
            loss_a, parts_a = idse_domain_loss(
                f_a, bank_a.bank, idx_a.to(f_a.device), state["alpha"], pa, aa, **loss_kw
            )
            loss_b, parts_b = idse_domain_loss(
                f_b, bank_b.bank, idx_b.to(f_b.device), state["alpha"], pb, ab, **loss_kw
            )
            self._pending = [(bank_a, idx_a, f_a.detach()), (bank_b, idx_b, f_b.detach())]
            info = {f"{k}_a": v for k, v in parts_a.items()} | {f"{k}_b": v for k, v in parts_b.items()}
            info["alpha"] = state["alpha"]
            return loss_a + loss_b, info

        self.train_stage("idse", domain_a, domain_b, total, step, on_epoch_start=on_epoch_start)
        self._flush_memory()

    def _frozen_copy(self) -> nn.Module:
        """``f_theta'``: a gradient-free copy of the stage-1 encoder (paper-spec §2.3)."""
        frozen = copy.deepcopy(self.encoder)
        for p in frozen.parameters():
            p.requires_grad_(False)
        if self.hp["frozen_bn"] == "batch":
            frozen.train()
            for m in frozen.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0  # batch statistics in the forward pass, running statistics unchanged
        else:
            frozen.eval()
        return frozen

    def _stage2(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        """CDSM, Eq. 18."""
        hp = self.hp
        assert self.bank_a is not None and self.bank_b is not None
        bank_a, bank_b = self.bank_a, self.bank_b
        total = self.epochs(int(hp["cdsm_epochs"]))
        self.info["cdsm_epochs"] = total
        if hp["stage2_memory_init"] == "reencode":
            self._new_banks(domain_a, domain_b)
        bank_a, bank_b = self.bank_a, self.bank_b
        frozen = self._frozen_copy()
        dim = int(bank_a.dim)
        disc = DomainClassifier(dim, int(hp["disc_hidden"])).to(self.ctx.device)
        tau = float(hp["tau"])
        every = int(hp["stage2_recluster"])
        agree_count = {"agree": 0.0, "partnered": 0.0, "total": 0.0}
        encoded: dict[str, torch.Tensor] = {}

        def on_epoch_start(epoch: int) -> None:
            self._flush_memory()
            if epoch == 0 or (every > 0 and epoch % every == 0):
                self._recluster(stage=2, epoch=epoch)
            if hp["sn2m_negatives"] == "encoded":  # the current f_theta(x^B_j), once per epoch (Eq. 17)
                encoded["a"] = self._memory_features(domain_a)
                encoded["b"] = self._memory_features(domain_b)

        def step(
            epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, float]]:
            self._flush_memory()
            s = self.structure
            assert s is not None
            xa, xb = self.view(domain_a, idx_a), self.view(domain_b, idx_b)
            f_a, f_b = self._encode_pair(xa, xb)
            info: dict[str, float] = {}
            loss = adversarial_loss(
                disc,
                f_a,
                f_b,
                mode=hp["adv_mode"],
                lam=float(hp["grl_lambda"]),
                reduction=hp["dal_reduction"],
            )
            info["dal"] = float(loss.detach())
            if hp["use_spr"]:
                with torch.no_grad():
                    g_a, g_b = self._encode_pair(xa, xb, frozen)
                l_spr = spr_loss(f_a, g_a) + spr_loss(f_b, g_b)
                loss = loss + l_spr
                info["spr"] = float(l_spr.detach())
            if hp["sn2m_negatives"] == "memory":
                cand_a, cand_b = bank_a.bank, bank_b.bank
            elif hp["sn2m_negatives"] == "encoded":
                cand_a, cand_b = encoded["a"], encoded["b"]
            else:
                cand_a, cand_b = f_a, f_b
            if hp["sn2m_mode"] == "switch":
                t_a = sn2m_targets(f_a, s.own_a, s.a_to_b, s.merged_b, cand_b, s.merged_mask_a)
                t_b = sn2m_targets(f_b, s.own_b, s.b_to_a, s.merged_a, cand_a, s.merged_mask_b)
                unmerged = hp["sn2m_unmerged"]
                l_match = sn2m_loss(f_a, s.merged_b, cand_b, t_a, tau, unmerged) + sn2m_loss(
                    f_b, s.merged_a, cand_a, t_b, tau, unmerged
                )
                agree = float(t_a.agree.float().mean() + t_b.agree.float().mean()) / 2
                partnered = float(t_a.partnered.float().mean() + t_b.partnered.float().mean()) / 2
                info["agree"] = agree
                agree_count["agree"] += agree
                agree_count["partnered"] += partnered
                agree_count["total"] += 1
            else:
                l_match = nn_match_loss(f_a, cand_b, tau) + nn_match_loss(f_b, cand_a, tau)
            loss = loss + l_match
            info["sn2m"] = float(l_match.detach())
            if hp["stage2_memory_update"]:
                self._pending = [(bank_a, idx_a, f_a.detach()), (bank_b, idx_b, f_b.detach())]
            return loss, info

        scale = float(hp["cdsm_lr_scale"])
        self.train_stage(
            "cdsm",
            domain_a,
            domain_b,
            total,
            step,
            params=[],
            on_epoch_start=on_epoch_start,
            extra_param_groups=[
                {"params": list(self.encoder.parameters()), "lr_mult": scale},
                {"params": list(disc.parameters()), "lr_mult": scale},
            ],
        )
        self._flush_memory()
        if agree_count["total"]:
            self.info["sn2m_agree"] = agree_count["agree"] / agree_count["total"]
            self.info["sn2m_partnered"] = agree_count["partnered"] / agree_count["total"]

    # ----- open-set detection ----------------------------------------------------------------------
    def detect_private(self, query_feats: np.ndarray, gallery_feats: np.ndarray) -> np.ndarray:
        """``[N_q]`` bool by UEM's own rule (paper-spec §2.6, Eqs. 25–27) on ``embed`` features."""
        return self._detect(query_feats, gallery_feats).flags

    def export_detector(self, query_feats: np.ndarray, gallery_feats: np.ndarray) -> Any:
        """The detector a saved model carries (:class:`u2cdr_bench.carried_detector.DetectorState`): the
        run's query prototypes ``P^A`` and their Eq. 25 thresholds (NaN = unmerged, always private)."""
        from ...carried_detector import DetectorState

        res = self._detect(query_feats, gallery_feats, record=False)
        return DetectorState("uem", res.prototypes, res.proto_thresholds, "euclidean", "delta")

    def _detect(self, query_feats: np.ndarray, gallery_feats: np.ndarray, record: bool = True) -> Any:
        hp = self.hp
        t0 = time.perf_counter()
        seed = int(self.ctx.seed)
        if self._k_input is not None:
            k_q, k_g = self._k_input
        else:
            k_q = self._estimate(np.ascontiguousarray(query_feats, dtype=np.float32), seed)
            k_g = self._estimate(np.ascontiguousarray(gallery_feats, dtype=np.float32), seed + 1)
        res = uem_private_detector(
            query_feats,
            gallery_feats,
            seed=seed,
            k_query=k_q,
            k_gallery=k_g,
            niter=int(hp["kmeans_niter"]),
            nredo=int(hp["kmeans_nredo"]),
            spread=hp["detector_spread"],
            merge_rule=hp["merge_rule"],
        )
        if record:
            self.info["detector"] = res.summary()
            self.info["timings"]["detector"] += time.perf_counter() - t0
        return res
