"""The digits CNN's max-pooling in NCHW against a channels-last round trip: time ratio and bit identity.

Usage::

    U2CDR_THREADS=1 .venv/bin/python benchmarks/bench_pool.py             # batch 256, 20 repeats
    U2CDR_THREADS=1 .venv/bin/python benchmarks/bench_pool.py --batch 128 --repeats 50

Why (issue 13, docs/performance.md, "A lever for the next regeneration"): a cProfile of one DGDIR digits run
put 13 % of it in ``F.max_pool2d`` (3,914 calls, 20.7 s of 155 s). On this CPU build of torch, the 2×2
max-pool of a contiguous NCHW ``[256, 32, 16, 16]`` tensor is several times slower than the same pool on a
channels-last tensor. The lever is ``pool(x.contiguous(memory_format=torch.channels_last)).contiguous()``:
same values, same argmax (so the same gradient), in a different memory walk.

What is measured, in this process and the same minutes (one torch thread unless ``U2CDR_THREADS`` says
otherwise):

1. the pool alone, forward + backward, on the ReLU'd outputs of the first conv block of
   :class:`u2cdr_bench.nets.SmallCNN` (shape ``[B, 32, 16, 16]``), stock against round trip;
2. one whole training step of ``SmallCNN`` (forward, ``mean(f^2)``, backward) with its two ``MaxPool2d``
   layers stock against wrapped, from the same weights and the same batch.

For each, the median time of ``--repeats`` runs, the ratio stock / round trip, and whether the outputs and
every parameter gradient are **bit-identical** (``torch.equal``). The input holds ties on purpose (values
rounded to 1/8 after the ReLU, so many 2×2 windows have equal maxima): the argmax that a tie picks must be the
same in both layouts for the gradients to match.

This script changes nothing in the package: ``nets`` is a root of every run's code fingerprint
(:mod:`u2cdr_bench.fingerprint`), so a change there marks every committed record stale; it is measured here
for the next full regeneration.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

# isort: off
import u2cdr_bench  # noqa: F401 - pins the numerical kernels and thread count before torch is used

# isort: on
import torch
from torch import nn

from u2cdr_bench.nets import SmallCNN
from u2cdr_bench.runner import compute_threads, set_threads


class ChannelsLastPool(nn.Module):
    """``MaxPool2d`` applied to a channels-last copy, returned contiguous (NCHW) again."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


def wrap_pools(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose ``MaxPool2d`` children are wrapped in :class:`ChannelsLastPool`."""
    out = copy.deepcopy(model)
    for parent in list(out.modules()):
        for name, sub in list(parent.named_children()):
            if isinstance(sub, nn.MaxPool2d):
                setattr(parent, name, ChannelsLastPool(sub))
    return out


def median_time(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(case: str, step, stock: nn.Module, fast: nn.Module, repeats: int) -> dict:
    """Run ``step`` (module -> tensors) on both modules: bit identity of every tensor, median times, ratio."""
    out_a, out_b = step(stock), step(fast)
    flat_a = [out_a[0], *(out_a[1] if isinstance(out_a[1], list) else [out_a[1]])]
    flat_b = [out_b[0], *(out_b[1] if isinstance(out_b[1], list) else [out_b[1]])]
    same = all(torch.equal(a, b) for a, b in zip(flat_a, flat_b, strict=True))
    t_stock = median_time(lambda: step(stock), repeats)
    t_fast = median_time(lambda: step(fast), repeats)
    return {
        "case": case,
        "stock_s": round(t_stock, 5),
        "channels_last_s": round(t_fast, 5),
        "ratio": round(t_stock / t_fast, 2),
        "identical": bool(same),
    }


def pool_case(batch: int, repeats: int, seed: int) -> dict:
    """Step 1: the pool alone on a ``[batch, 32, 16, 16]`` tensor with ties, forward + backward."""
    g = torch.Generator().manual_seed(seed)
    base = (torch.randn(batch, 32, 16, 16, generator=g).relu() * 8).round() / 8
    grad_out = torch.randn(batch, 32, 8, 8, generator=g)
    pool = nn.MaxPool2d(2)
    wrapped = ChannelsLastPool(pool)

    def step(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        x = base.clone().requires_grad_(True)
        y = module(x)
        y.backward(grad_out)
        return y.detach(), x.grad

    return compare(f"max_pool2d [{batch}, 32, 16, 16] fwd+bwd", step, pool, wrapped, repeats)


def step_case(batch: int, repeats: int, seed: int) -> dict:
    """Step 2: one SmallCNN training step (forward, ``mean(f^2)``, backward), stock against wrapped pools."""
    torch.manual_seed(seed)
    model = SmallCNN()
    wrapped = wrap_pools(model)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(batch, 1, 16, 16, generator=g)

    def step(module: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        module.zero_grad(set_to_none=True)
        f = module(x)
        (f**2).mean().backward()
        return f.detach(), [p.grad.clone() for p in module.parameters()]

    return compare(f"SmallCNN step [{batch}, 1, 16, 16] fwd+bwd", step, model, wrapped, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    set_threads(compute_threads())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for case in (pool_case, step_case):
        print(json.dumps(case(args.batch, args.repeats, args.seed)))


if __name__ == "__main__":
    main()
