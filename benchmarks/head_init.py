"""Retrieval at initialisation: the features-mode heads against the raw features (issue 10, docs/uem.md).

For every directed pair and setting of a features dataset (default PACS, frozen EfficientNet-Lite0 features),
mAP@All of: the raw features (Euclidean, = ``pretrained``), the raw features L2-normalised (cosine), and the
L2-normalised output (what every method's ``embed`` returns) of a freshly built head: ``structure``
(:class:`u2cdr_bench.nets.StructureHead`, PCA-initialised on the two domains of the task) and ``random``
(the old randomly initialised MLP head, seed 2024). No training; labels only score.

    .venv/bin/python benchmarks/head_init.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="pacs")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--settings", default="close-set,partial,open-set")
    args = ap.parse_args()

    from u2cdr_bench.data.registry import DataOptions, get_dataset
    from u2cdr_bench.metrics import map_all
    from u2cdr_bench.nets import make_encoder_factory
    from u2cdr_bench.protocols import get_protocol

    spec = get_dataset(args.dataset)
    options = DataOptions(data_dir=args.data_dir, quiet=True, n_views=0)
    domains = {d.name: spec.load(d.name, options) for d in spec.domains}
    cols = ("raw", "raw-cosine", "structure", "random")
    print(f"| setting | pair | {' | '.join(cols)} |")
    print("|---|---|" + "---|" * len(cols))
    for setting in args.settings.split(","):
        protocol = get_protocol(spec, setting, 0)
        scores = {c: [] for c in cols}
        for q, g in spec.parse_pairs(None):
            qa = domains[q].select_classes(protocol.query_classes)
            gb = domains[g].select_classes(protocol.gallery_classes)
            xq, xg = qa.x.float(), gb.x.float()
            row = {"raw": map_all(xq.numpy(), qa.labels, xg.numpy(), gb.labels)}
            row["raw-cosine"] = map_all(
                F.normalize(xq, dim=1).numpy(), qa.labels, F.normalize(xg, dim=1).numpy(), gb.labels
            )
            factory = make_encoder_factory("features", (xq.shape[1],))
            for head in ("structure", "random"):
                torch.manual_seed(2024)
                enc = factory(head=head).eval()
                if head == "structure":
                    enc.head.init_from_data(torch.cat([xq, xg]))
                with torch.no_grad():
                    fq, fg = F.normalize(enc(xq), dim=1), F.normalize(enc(xg), dim=1)
                row[head] = map_all(fq.numpy(), qa.labels, fg.numpy(), gb.labels)
            for c in cols:
                scores[c].append(row[c])
            pair = f"{spec.abbrev(q)}→{spec.abbrev(g)}"
            print(f"| {setting} | {pair} | " + " | ".join(f"{row[c]:.1f}" for c in cols) + " |", flush=True)
        print(f"| {setting} | **avg** | " + " | ".join(f"**{np.mean(scores[c]):.1f}**" for c in cols) + " |")


if __name__ == "__main__":
    main()
