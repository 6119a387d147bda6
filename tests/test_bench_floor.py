"""benchmarks/bench_floor.py (the pass log of the own-work floor) and bench_pool.py (issue 13)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_timers_log_only_outermost_module_passes() -> None:
    bf = _module("bench_floor")
    timers = bf.Timers()
    lin = nn.Linear(3, 2)
    forward = timers.wrap(nn.Linear.forward, "encoder")
    backward = timers.wrap(torch.Tensor.backward, "encoder")
    cluster = timers.wrap(lambda x: forward(lin, x), "clustering")

    out = forward(lin, torch.randn(4, 3))  # a training-step pass: logged
    backward(out.sum())  # a backward is timed as encoder work but is not a pass
    lin.eval()
    with torch.no_grad():
        forward(lin, torch.randn(5, 3))  # a key-encoder pass: logged without grad
        cluster(torch.randn(7, 3))  # inside clustering: counted there, not logged
    backward(torch.ones(2, requires_grad=True) * 2, torch.ones(2))  # gradient argument: not a pass

    assert timers.passes == [("Linear", True, True, (4, 3)), ("Linear", False, False, (5, 3))]
    assert set(timers.acc) == {"encoder", "clustering"}


def test_channels_last_pool_is_bit_identical_on_ties() -> None:
    bp = _module("bench_pool")
    for case in (bp.pool_case, bp.step_case):
        row = case(8, 1, 0)
        assert row["identical"] is True
        assert row["stock_s"] > 0 and row["channels_last_s"] > 0


def test_compare_reports_a_difference() -> None:
    bp = _module("bench_pool")
    x = torch.rand(2, 3, 4, 4)

    def step(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        return module(x), x

    row = bp.compare("max vs avg", step, nn.MaxPool2d(2), nn.AvgPool2d(2), 1)
    assert row["identical"] is False
    assert row["case"] == "max vs avg"
