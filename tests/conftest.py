"""Import the package first: it pins the numerical libraries' kernels before torch, numpy or faiss load
(u2cdr_bench.reproducibility), so a test run uses the same kernels as a CLI run."""

import u2cdr_bench  # noqa: F401
