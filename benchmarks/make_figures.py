"""Regenerate the figures of the docs (``docs/figures/``) from PACS runs, with ``u2cdr-bench`` itself.

1. ``pretrained`` and ``uem`` on one PACS pair (default ``A:C``, open-set, seed 2024, features mode,
   ``effnet-lite0``) with ``--save-embeddings --save-model`` into a work folder (a temporary one unless
   ``--work``; never ``results/``). A UEM PACS run takes about 75 s on one CPU thread once the features are
   cached (``u2cdr-bench run`` extracts and caches missing ones first).
2. ``docs/figures/retrievals.png`` -- ``u2cdr-bench plot retrievals`` of the UEM run;
   ``docs/figures/embedding.png`` -- ``u2cdr-bench plot embedding`` of ``pretrained`` and ``uem`` together;
   ``docs/figures/results.png`` -- ``u2cdr-bench plot results --runs results/pacs`` (the committed grid);
   ``docs/figures/retrieve.png`` -- ``u2cdr-bench retrieve --plot`` with the saved UEM model, a gallery of
   ``--gallery-per-class`` images per class of the gallery domain and one query image per class of the
   query domain's shared classes plus one private one.

    U2CDR_THREADS=1 .venv/bin/python benchmarks/make_figures.py --data-dir ../shared/data
    U2CDR_THREADS=1 .venv/bin/python benchmarks/make_figures.py --pair P:S --work /tmp/figures

Re-run it after a change to UEM, the plots or the PACS results; the figures are then rewritten in place.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from u2cdr_bench.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str]) -> None:
    t0 = time.perf_counter()
    code = cli(args)
    print(f"u2cdr-bench {' '.join(args[:2])} ... -> {code} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if code != 0:
        sys.exit(code)


def _record(folder: Path, method: str) -> Path:
    for path in sorted(folder.glob("*.json")):
        if json.loads(path.read_text())["config"]["method"] == method:
            return path
    raise SystemExit(f"no {method} record in {folder}")


def _retrieve_folders(rec: dict, data_home: Path, work: Path, per_class: int) -> tuple[Path, list[Path]]:
    """A small gallery (``per_class`` images per gallery class) and 3 shared + 1 private query images."""
    from u2cdr_bench.data.manifests import get_manifest
    from u2cdr_bench.data.real import discover_domain

    cfg = rec["config"]
    manifest = get_manifest(cfg["dataset"])
    gallery = work / "retrieve-gallery"
    shutil.rmtree(gallery, ignore_errors=True)
    paths, _, labels, _ = discover_domain(manifest, cfg["gallery"], data_home)
    for cls in rec["protocol"]["gallery_classes"]:
        idx = [i for i, y in enumerate(labels) if manifest.class_names[y] == cls][:per_class]
        for i in idx:
            (gallery / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(paths[i], gallery / cls / paths[i].name)
    paths, _, labels, _ = discover_domain(manifest, cfg["query"], data_home)
    shared = [c for c in rec["protocol"]["query_classes"] if c in rec["protocol"]["gallery_classes"]]
    private = [c for c in rec["protocol"]["query_classes"] if c not in rec["protocol"]["gallery_classes"]]
    queries = []
    for cls in shared[:3] + private[:1]:
        i = [j for j, y in enumerate(labels) if manifest.class_names[y] == cls][7]
        queries.append(paths[i])
    return gallery, queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--pair", default="A:C", help="PACS pair QUERY:GALLERY (default A:C)")
    ap.add_argument("--setting", default="open-set")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "pacs")
    ap.add_argument("--gallery-per-class", type=int, default=25)
    args = ap.parse_args()

    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="u2cdr-figures-")
        args.work = Path(tmp.name)
    runs = args.work / "runs"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        common = ["--dataset", "pacs", "--data-dir", str(args.data_dir), "--protocol", args.setting]
        common += ["--pairs", args.pair, "--seeds", str(args.seed), "--out", str(runs), "--quiet"]
        for method in ("pretrained", "uem"):
            _cli(["run", "--method", method, *common, "--save-embeddings", "--save-model"])
        pre, uem = _record(runs, "pretrained"), _record(runs, "uem")
        _cli(
            [
                "plot",
                "retrievals",
                str(uem),
                "--top",
                "8",
                "--queries",
                "6",
                "-o",
                str(args.out / "retrievals.png"),
            ]
        )
        _cli(["plot", "embedding", str(pre), str(uem), "--projection", "tsne", "--max-points", "800",
              "-o", str(args.out / "embedding.png")])  # fmt: skip
        results, cwd = args.results.resolve(), Path.cwd().resolve()
        shown = results.relative_to(cwd) if results.is_relative_to(cwd) else results  # title: results/pacs
        _cli(["plot", "results", "--runs", str(shown), "-o", str(args.out / "results.png")])
        rec = json.loads(uem.read_text())
        gallery, queries = _retrieve_folders(rec, args.data_dir, args.work, args.gallery_per_class)
        _cli(["retrieve", "--model", str(uem), "--gallery", str(gallery), "--query", *map(str, queries),
              "--top", "8", "--plot", "-o", str(args.out / "retrieve.png"), "--cache-dir",
              str(args.work / "cache"), "--quiet"])  # fmt: skip
    finally:
        if tmp is not None:
            tmp.cleanup()
    for name in ("retrievals", "embedding", "results", "retrieve"):
        print(f"wrote {args.out / (name + '.png')}")


if __name__ == "__main__":
    main()
