"""Extrapolate one seed of a results grid from per-method runs on one representative pair (issue 13).

Whole grids take hours on a shared 2-core machine, so this script does not run one. It reads the rows that
``benchmarks/bench_floor.py --json`` wrote (one run per method on one pair, at ``--epochs-scale s``: CPU
seconds of the run, its evaluation seconds and the number of paired batches it trained on) and models every
run of the grid as

    cpu(config) = eval_s + per_step_s * epochs_full(method) * steps_per_epoch(config)

with ``per_step_s = (run_s - eval_s) / steps`` of the measured run (per-epoch work such as clustering is
spread over its steps), ``epochs_full`` the method's epochs at ``--epochs-scale 1`` (``epochs``, or UEM's
``idse_epochs + cdsm_epochs``, plus CDS's ``id_only_epochs``) and ``steps_per_epoch = ceil(max(N_A, N_B) /
batch)`` from the protocol's class lists of each (setting, pair). The grid's total is the sum over the
methods, settings and directed pairs; the wall time on ``--workers`` single-threaded workers is the total
divided by the workers (a perfect split, every worker on its own core: a lower bound on a shared machine).
Assumptions, named: run time linear in the number of steps; evaluation cost the same for every config of a
method; loading (once per domain and process) left out.

    .venv/bin/python benchmarks/grid_budget.py /tmp/floor_digits.json
    .venv/bin/python benchmarks/grid_budget.py /tmp/floor_pacs.json --data-dir ../shared/data --markdown
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from tabulate import tabulate

from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.methods import get_method
from u2cdr_bench.protocols import get_protocol, setting_names
from u2cdr_bench.runner import input_mode, plan

#: Epoch keys summed into a method's full-scale epochs (UEM: both stages; CDS: its in-domain warm-up too).
EPOCH_KEYS = ("epochs", "idse_epochs", "cdsm_epochs", "id_only_epochs")


def full_epochs(hp: dict[str, Any]) -> int:
    """Training epochs of a run at ``--epochs-scale 1``."""
    return int(sum(int(hp[k]) for k in EPOCH_KEYS if k in hp and hp[k] is not None))


def grid_sizes(dataset: str, options: DataOptions) -> dict[tuple[str, str, str], tuple[int, int]]:
    """``(setting, query, gallery) -> (N_A, N_B)`` for every directed pair and setting (split seed 0)."""
    spec = get_dataset(dataset)
    domains: dict[str, Any] = {}
    out = {}
    for setting in setting_names():
        protocol = get_protocol(spec, setting, 0)
        for q, g in spec.parse_pairs(None):
            for d in (q, g):
                if d not in domains:  # the clean view is enough to count the samples
                    domains[d] = spec.load(d, replace(options, views=("clean",)))
            n_a = len(domains[q].select_classes(protocol.query_classes))
            n_b = len(domains[g].select_classes(protocol.gallery_classes))
            out[(setting, q, g)] = (n_a, n_b)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=Path, nargs="+", help="bench_floor.py --json outputs (one dataset)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = [r for path in args.rows for r in json.loads(path.read_text())]
    datasets = {r["dataset"] for r in rows}
    if len(datasets) != 1:
        raise SystemExit(f"error: the rows mix datasets {sorted(datasets)}; give one dataset's rows.")
    (dataset,) = datasets
    options = DataOptions(data_dir=args.data_dir, backbone=args.backbone, quiet=True)
    spec = get_dataset(dataset)
    _, _, profile = input_mode(spec, options)
    sizes = grid_sizes(dataset, options)
    table = []
    total = 0.0
    per_setting: dict[str, float] = defaultdict(float)
    for r in rows:
        method = r["method"]
        hp = get_method(method).hparams_for(profile, spec.method_profile, {})
        batch = int(hp["batch_size"])
        eval_s = min(float(r["eval_wall_s"]), float(r["run_s"]))
        per_step = (float(r["run_s"]) - eval_s) / max(1, int(r["steps"]))
        epochs = full_epochs(hp)
        runs = 0
        method_total = 0.0
        for setting in setting_names():
            for cfg in plan(method, dataset, setting, None, [2024], options):
                n_a, n_b = sizes[(setting, cfg.query, cfg.gallery)]
                spe = max(1, math.ceil(max(n_a, n_b) / batch))
                t = eval_s + per_step * epochs * spe
                method_total += t
                per_setting[setting] += t
                runs += 1
        total += method_total
        table.append(
            [method, runs, epochs, round(per_step * 1000, 1), round(eval_s, 1), round(method_total / 60, 1)]
        )
    heads = ["method", "runs", "epochs", "ms / step", "eval s / run", "grid CPU min"]
    print(tabulate(table, headers=heads, tablefmt="github" if args.markdown else "simple"))
    print(
        f"\n{dataset}, one seed: {total / 60:.0f} CPU-minutes in all "
        f"({', '.join(f'{k} {v / 60:.0f}' for k, v in per_setting.items())}); "
        f"on {args.workers} workers about {total / 60 / args.workers:.0f} min wall "
        "(extrapolated from one pair per method, not a measured grid)"
    )


if __name__ == "__main__":
    main()
