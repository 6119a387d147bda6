"""UEM (paper-spec §2) and its Table-4 ablations; importing this package registers ``uem`` then the ablations.

Modules: :mod:`.idse` (stage-1 losses), :mod:`.cdsm` (stage-2 losses), :mod:`.distance` (the product
distance delta), :mod:`.prototypes` (K-means + Elbow + merging of the memory banks), :mod:`.detector`
(open-set rule, Eqs. 25–27), :mod:`.method` (the :class:`UEM` method), :mod:`.ablations`.
"""

from .ablations import UEMNoPM, UEMNoSEL, UEMNoSN2M, UEMNoSPDA
from .method import UEM

__all__ = ["UEM", "UEMNoPM", "UEMNoSEL", "UEMNoSN2M", "UEMNoSPDA"]
