"""An example plug-in method: SimCLR's two-view contrast inside each domain plus cross-domain mean matching.

Per paired batch of the query domain A and the gallery domain B (``z`` = L2-normalised encoder outputs of two
random views of the same samples, ``[B, D]`` each, temperature ``tau``):

    L = NT-Xent(z_A, z_A') + NT-Xent(z_B, z_B') + lam * || mean(z_A) - mean(z_B) ||^2

NT-Xent is Eq. 1 of Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020; the second term matches the domains' first moments. Open-set queries are flagged by the generic
detector of the benchmark (inherited ``detect_private``) in the cosine distance. Run it with
``u2cdr-bench run --method my_method:TwoViewContrast`` from this folder.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods.common import EncoderMethod


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss over 2B views ([B, D] each, unit rows); row i of z1 and row i of z2 are positives."""
    z = torch.cat([z1, z2])  # [2B, D]
    sim = (z @ z.t()) / tau  # [2B, 2B] cosine similarities / tau
    self_pairs = torch.eye(len(z), dtype=torch.bool)
    sim = sim.masked_fill(self_pairs, float("-inf"))  # a view is not its own negative
    b = len(z1)
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(sim, positives)


class TwoViewContrast(EncoderMethod):
    name = "two-view"
    summary = "Example plug-in: SimCLR two-view contrast per domain + cross-domain mean matching."
    citation = "Chen et al., ICML 2020 (NT-Xent, Eq. 1)"
    distance = "cosine"  # the generic open-set detector's distance
    defaults: ClassVar[dict[str, Any]] = {"epochs": 10, "tau": 0.2, "lam": 1.0}

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        tau, lam = float(self.hp["tau"]), float(self.hp["lam"])

        def step(epoch: int, idx_a: torch.Tensor, idx_b: torch.Tensor):
            za1 = self.features(self.view(domain_a, idx_a))
            za2 = self.features(self.view(domain_a, idx_a))
            zb1 = self.features(self.view(domain_b, idx_b))
            zb2 = self.features(self.view(domain_b, idx_b))
            inst = nt_xent(za1, za2, tau) + nt_xent(zb1, zb2, tau)
            align = (za1.mean(0) - zb1.mean(0)).pow(2).sum()
            return inst + lam * align, {"inst": inst.item(), "align": align.item()}

        self.train_stage("contrast", domain_a, domain_b, self.epochs(int(self.hp["epochs"])), step)
        self.info["epochs"] = self.epochs(int(self.hp["epochs"]))
