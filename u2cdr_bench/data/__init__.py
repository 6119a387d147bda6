"""Datasets: embedded digits, real image datasets, custom folders and feature files."""

from .registry import DATASETS, DataOptions, DatasetSpec, DomainInfo, get_dataset, register_dataset
from .types import DomainSamples, UnlabeledDomain

__all__ = [
    "DATASETS",
    "DataOptions",
    "DatasetSpec",
    "DomainInfo",
    "DomainSamples",
    "UnlabeledDomain",
    "get_dataset",
    "register_dataset",
]
