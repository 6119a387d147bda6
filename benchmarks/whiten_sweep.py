"""Choose ``center-whiten``'s ``shrinkage`` and ``dims`` on the development data (issue 16).

For every (shrinkage, dims) of the grid, computes ``center-whiten``'s embedding on every directed pair of
each dataset under the three settings (split seed 0): one eigendecomposition of the pooled centred
covariance per task serves every shrinkage, since ``Sigma_s`` has ``Sigma``'s eigenvectors, and the first
task of each dataset is checked against the registered method itself. Scores mAP@All with the run's own
metric function (shared-set under open-set: private queries have no relevant item and drop out). Prints one
markdown table: a row per configuration, the per-setting averages over pairs per dataset, and the mean over
all (dataset, setting) cells, by which the default is chosen (over all pairs and settings of both datasets,
never per pair). The method trains nothing and is deterministic, so one seed is exact. Labels are read only
to score.

    .venv/bin/python benchmarks/whiten_sweep.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.methods import get_method
from u2cdr_bench.methods.base import FitContext
from u2cdr_bench.methods.training_free import center, l2
from u2cdr_bench.metrics import map_all
from u2cdr_bench.protocols import get_protocol, setting_names


def _tasks(name: str, data_dir: Path | None) -> list[tuple[str, str, object, object]]:
    spec = get_dataset(name)
    options = DataOptions(data_dir=data_dir, views=("clean",), quiet=True)
    doms = {d.name: spec.load(d.name, options) for d in spec.domains}
    pairs = list(spec.pairs) if spec.pairs else [(q, g) for q in doms for g in doms if q != g]
    out = []
    for setting in setting_names():
        proto = get_protocol(spec, setting, 0)
        for q, g in pairs:
            out.append(
                (setting, f"{q}->{g}", doms[q].select_classes(proto.query_classes),
                 doms[g].select_classes(proto.gallery_classes))
            )  # fmt: skip
    return out


def _flat(dom: object) -> np.ndarray:
    return dom.x.reshape(dom.n, -1).numpy().astype(np.float64)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="pacs,digits")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--shrinkage", default="0,0.25,0.5,0.75,0.9,1")
    ap.add_argument("--dims", default="64,128,100000")
    args = ap.parse_args()
    grid = list(itertools.product(map(float, args.shrinkage.split(",")), map(int, args.dims.split(","))))
    cls = get_method("center-whiten")
    cells: dict[tuple[float, int], dict[tuple[str, str], list[float]]] = {c: {} for c in grid}
    for ds in args.datasets.split(","):
        tasks = _tasks(ds, args.data_dir)
        for i, (setting, pair, qd, gd) in enumerate(tasks):
            ua, ub = qd.unlabeled(), gd.unlabeled()
            xa, xb = center(_flat(ua)), center(_flat(ub))
            pooled = np.concatenate([xa, xb])
            cov = pooled.T @ pooled / max(1, len(pooled) - 1)
            lam, vecs = np.linalg.eigh(cov)  # Sigma_s shares Sigma's eigenvectors; its eigenvalues are
            iso = np.trace(cov) / cov.shape[0]  # (1 - s) lam + s tr/D, so one eigh serves every s
            order = np.argsort(lam)[::-1]
            for s, d in grid:
                keep = order[:d]
                proj = vecs[:, keep] / np.sqrt(np.maximum((1 - s) * lam[keep] + s * iso, 1e-12))[None, :]
                score = map_all(l2(xa @ proj), qd.labels, l2(xb @ proj), gd.labels)
                cells[(s, d)].setdefault((ds, setting), []).append(score)
            if i == 0:  # the shortcut is the method: check one configuration through the class itself
                ctx = FitContext(
                    seed=2024, encoder_factory=lambda: None, input_kind="features", input_shape=()
                )
                m = cls(ctx, {"shrinkage": grid[0][0], "dims": grid[0][1]})
                m.fit(ua, ub)
                ref = map_all(m.embed(ua), qd.labels, m.embed(ub), gd.labels)
                assert abs(ref - cells[grid[0]][(ds, setting)][-1]) < 0.05, (ref, cells[grid[0]])
            print(f"{ds} {setting} {pair}: done ({i + 1}/{len(tasks)})", flush=True)
    cols = list(next(iter(cells.values())))
    print("\n| shrinkage | dims | " + " | ".join(f"{ds} {st}" for ds, st in cols) + " | mean |")
    print("|---:|---:|" + "---:|" * (len(cols) + 1))
    for (s, d), per in cells.items():
        avgs = [float(np.mean(per[c])) for c in cols]
        dims = "all" if d >= 100000 else str(d)
        print(f"| {s:g} | {dims} | " + " | ".join(f"{a:.1f}" for a in avgs) + f" | {np.mean(avgs):.1f} |")


if __name__ == "__main__":
    main()
