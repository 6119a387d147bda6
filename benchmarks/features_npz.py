"""Write a real dataset's clean frozen features as an npz without views (the issue-18 input (b)).

The file has the ``--dataset npz:PATH`` layout (docs/data.md): ``class_names`` and, per domain ``D``,
``features_D`` ``[N, d]`` float32 and ``labels_D`` ``[N]`` int64, and no ``views_D``, so every method that
reads views gets the feature-space generator of ``--feature-views``. Only the ``clean`` view is extracted
(or read from the feature cache).

    .venv/bin/python benchmarks/features_npz.py --dataset pacs --data-dir ../shared/data -o pacs_clean.npz
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from u2cdr_bench.data.registry import DataOptions, get_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="pacs")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    spec = get_dataset(args.dataset)
    options = DataOptions(data_dir=args.data_dir, backbone=args.backbone, views=("clean",), quiet=True)
    arrays: dict[str, np.ndarray] = {"class_names": np.array(spec.class_names)}
    for d in spec.domains:
        dom = spec.load(d.name, options)
        arrays[f"features_{d.name}"] = dom.x.numpy().astype(np.float32)
        arrays[f"labels_{d.name}"] = np.asarray(dom.labels, dtype=np.int64)
        print(f"{d.name}: {len(dom)} samples, {dom.x.shape[1]}-d", flush=True)
    tmp = args.output.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
