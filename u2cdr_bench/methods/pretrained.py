"""Method ``pretrained``: no training; the input representation itself is the retrieval feature.

For the embedded digits the representation is the flattened pixels; in features mode it is the frozen
backbone's features. Open-set flags come from the generic detector (paper-spec §4.2) in Euclidean distance.
It is the floor every trained method has to beat.
"""

from __future__ import annotations

import numpy as np

from ..data.types import UnlabeledDomain
from . import register_method
from .base import Method


@register_method
class Pretrained(Method):
    name = "pretrained"
    summary = "No training: the input representation (pixels or frozen backbone features) is the feature."
    citation = "—"
    distance = "euclidean"

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        self.info["trained"] = False

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        return domain.x.reshape(domain.n, -1).numpy().astype(np.float32, copy=True)
