"""Per-domain memory bank with momentum updates (paper-spec §2.2(a), Eq. 5).

One slot per sample of a domain. Each slot is initialised with the initial model's feature of that
sample and updated after every step as

    m_i <- beta * m_i + (1 - beta) * f_theta(x_i),        beta = 0.99      (Eq. 5)

followed by L2 renormalisation when ``renormalize`` is set (MoCo / InstDisc practice; the paper does
not say, paper-spec §7 #2). The bank holds no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class MemoryBank:
    """A ``[N, D]`` feature memory.

    Example::

        bank = MemoryBank(init_feats, momentum=0.99)
        logits = f @ bank.bank.T / tau
        bank.update(idx, f.detach())
    """

    def __init__(self, init: torch.Tensor, momentum: float = 0.99, renormalize: bool = True) -> None:
        if init.dim() != 2:
            raise ValueError(f"memory init must be [N, D], got {tuple(init.shape)}")
        self.momentum = float(momentum)
        self.renormalize = renormalize
        bank = init.detach().clone().float()
        self.bank = F.normalize(bank, dim=1) if renormalize else bank

    def __len__(self) -> int:
        return self.bank.shape[0]

    @property
    def dim(self) -> int:
        return self.bank.shape[1]

    @torch.no_grad()
    def update(self, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """Eq. 5 on the rows ``idx`` (``[B]``) with new features ``feats`` (``[B, D]``).

        Duplicate indices in one batch: the last occurrence wins (each is applied to the old value).
        """
        new = self.momentum * self.bank[idx] + (1.0 - self.momentum) * feats.detach().float()
        if self.renormalize:
            new = F.normalize(new, dim=1)
        self.bank[idx] = new

    def mean(self) -> torch.Tensor:
        """Mean vector of all entries, ``[D]`` (the \\overline{M} of Eq. 8)."""
        return self.bank.mean(dim=0)

    def numpy(self):
        return self.bank.numpy().astype("float32", copy=True)
