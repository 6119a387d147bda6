"""Shared fixtures: short digits runs with saved outputs (used by the artifacts, plots and retrieve tests).

Importing the package first pins the numerical libraries' kernels before torch, numpy or faiss load
(u2cdr_bench.reproducibility), so a test run uses the same kernels as a CLI run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import u2cdr_bench  # noqa: F401


@dataclass(frozen=True)
class SavedRuns:
    """Records (with their saved outputs) of two digits open-set MN→OD runs in one folder."""

    folder: Path
    trained: Path  # source-only, --epochs-scale 0.1, --save-embeddings --save-model
    pretrained: Path  # pretrained, --save-embeddings --save-model

    def record(self, which: str = "trained") -> dict:
        return json.loads(getattr(self, which).read_text())


@pytest.fixture(scope="session")
def saved_runs(tmp_path_factory) -> SavedRuns:
    from u2cdr_bench.cli import main

    folder = tmp_path_factory.mktemp("saved-runs")
    common = ["--protocol", "open-set", "--pairs", "mnist:optdigits", "--out", str(folder), "--quiet"]
    paths = {}
    for method, extra in (("source-only", ["--epochs-scale", "0.1"]), ("pretrained", [])):
        before = set(folder.glob("*.json"))
        code = main(["run", "--method", method, *common, *extra, "--save-embeddings", "--save-model"])
        assert code == 0
        (new,) = set(folder.glob("*.json")) - before
        paths[method] = new
    return SavedRuns(folder, paths["source-only"], paths["pretrained"])
