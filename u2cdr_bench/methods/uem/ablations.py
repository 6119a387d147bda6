"""UEM ablations of the paper's Table 4, each a :class:`UEM` with one hyper-parameter changed.

==============  ===========================  ==============================================================
name            flag                         what changes
==============  ===========================  ==============================================================
uem-no-pm       ``idse_merge=False``         IDSE uses each domain's own prototypes (no translation/merging)
uem-no-sel      ``use_sel=False``            SEL removed from Eq. 12
uem-no-spda     ``use_spr=False``            standard domain-adversarial alignment, no SPR (Eq. 14)
uem-no-sn2m     ``sn2m_mode="nn"``           plain cross-domain cosine NN positive, no switch (§7 #20)
==============  ===========================  ==============================================================

The flag is part of the class defaults, so a user override of the same key still wins.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import register_method
from .method import UEM

__all__ = ["UEMNoPM", "UEMNoSEL", "UEMNoSN2M", "UEMNoSPDA"]


@register_method
class UEMNoPM(UEM):
    """UEM without prototype merging in IDSE: ``L_PNCE`` and ``L_SEL`` use the domain's own ``P^A``."""

    name: ClassVar[str] = "uem-no-pm"
    summary: ClassVar[str] = (
        "UEM ablation (Table 4): no prototype merging in IDSE, own-domain prototypes only"
    )
    defaults: ClassVar[dict[str, Any]] = {**UEM.defaults, "idse_merge": False}


@register_method
class UEMNoSEL(UEM):
    """UEM without the semantic-enhanced loss (Eq. 11) in Eq. 12."""

    name: ClassVar[str] = "uem-no-sel"
    summary: ClassVar[str] = "UEM ablation (Table 4): SEL removed from IDSE"
    defaults: ClassVar[dict[str, Any]] = {**UEM.defaults, "use_sel": False}


@register_method
class UEMNoSPDA(UEM):
    """UEM with standard domain-adversarial alignment in CDSM: Eq. 13 kept, SPR (Eq. 14) removed."""

    name: ClassVar[str] = "uem-no-spda"
    summary: ClassVar[str] = "UEM ablation (Table 4): standard adversarial alignment, no SPR"
    defaults: ClassVar[dict[str, Any]] = {**UEM.defaults, "use_spr": False}


@register_method
class UEMNoSN2M(UEM):
    """UEM with a plain cross-domain cosine nearest-neighbour positive instead of SN2M (paper-spec §7 #20)."""

    name: ClassVar[str] = "uem-no-sn2m"
    summary: ClassVar[str] = "UEM ablation (Table 4): plain cross-domain cosine NN positive instead of SN2M"
    defaults: ClassVar[dict[str, Any]] = {**UEM.defaults, "sn2m_mode": "nn"}
