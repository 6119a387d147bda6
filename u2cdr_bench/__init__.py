"""u2cdr-bench: a benchmarking toolkit for Universal Unsupervised Cross-Domain Retrieval (U²CDR).

The main method is UEM (Wang, Du, Zhu, "Semantic Feature Learning for Universal Unsupervised
Cross-Domain Retrieval", NeurIPS 2024); the baselines live in :mod:`u2cdr_bench.baselines`.
"""

__version__ = "0.1.0"
