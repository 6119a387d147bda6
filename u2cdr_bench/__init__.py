"""u2cdr-bench: a benchmarking toolkit for Universal Unsupervised Cross-Domain Retrieval (U²CDR).

The main method is UEM (Wang, Du, Zhu, "Semantic Feature Learning for Universal Unsupervised
Cross-Domain Retrieval", NeurIPS 2024); the baselines live in :mod:`u2cdr_bench.baselines`.
"""

__version__ = "0.1.0"

# Pin the numerical libraries' kernels before any of them loads (u2cdr_bench.reproducibility, issue 17).
from .reproducibility import apply_at_import as _apply_at_import  # noqa: E402

_apply_at_import()
