"""Cost and effect of the reproducibility switches (u2cdr_bench.reproducibility, docs/reliability.md).

For every switch set and every CPU imitation, runs the same few reference configs in a fresh subprocess (the
switches must be set before the libraries load) and prints, per config, the sha256 of the embeddings and the
metrics; then, per switch set, whether the embeddings are bit-identical across the imitations and the run
time as a ratio to ``native`` measured in the same invocation (median over ``--reps`` alternating repeats).

    .venv/bin/python benchmarks/bench_repro.py                       # the table of docs/reliability.md
    .venv/bin/python benchmarks/bench_repro.py --sets native,pinned --imitations none,avx2 --reps 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = (
    "uem:open-set:printed:optdigits",
    "pcs:open-set:printed:optdigits",
    "protonce-joint:partial:printed:optdigits",
    "dn2a:close-set:optdigits:printed",
)
SETS = (
    "native",
    "mkl-cbwr",
    "onednn-off",
    "deterministic",
    "float64-clustering",
    "aten-avx2,mkl-cbwr,onednn-off",
    "aten-avx2,mkl-cbwr,onednn-off,openblas-haswell,faiss-avx2",
    "pinned",
    "pinned,deterministic,float64-clustering",
)


def child(specs: list[str], scale: float) -> None:
    """Run ``specs`` (method:setting:query:gallery) in this process; one JSON line each."""
    import numpy as np

    import u2cdr_bench.runner as runner_mod
    from u2cdr_bench.data.registry import DataOptions

    seen: dict[str, str] = {}
    evaluate = runner_mod.evaluate

    def capture(qf, ql, gf, gl, private_pred=None):
        data = np.ascontiguousarray(qf).tobytes() + np.ascontiguousarray(gf).tobytes()
        if private_pred is not None:
            data += np.asarray(private_pred).tobytes()
        seen["sha"] = hashlib.sha256(data).hexdigest()[:12]
        return evaluate(qf, ql, gf, gl, private_pred=private_pred)

    runner_mod.evaluate = capture
    with tempfile.TemporaryDirectory() as tmp:
        runner = runner_mod.Runner(DataOptions(quiet=True), Path(tmp), force=True)
        for spec in specs:
            method, setting, q, g = spec.split(":")
            cfg = runner_mod.RunConfig(
                method=method,
                dataset="digits",
                setting=setting,
                query=q,
                gallery=g,
                seed=2024,
                epochs_scale=scale,
            )
            rec = runner.run(cfg)
            m = rec["metrics"]
            print(
                json.dumps(
                    {
                        "spec": spec,
                        "sha": seen["sha"],
                        "map_all": m["map_all"],
                        "acc": m.get("openset_accuracy"),
                        "fit_s": rec["timings"]["fit_s"],
                    }
                ),
                flush=True,
            )


def run_set(switches: str, imitation: str, specs: list[str], scale: float) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("U2CDR_")}
    env.update({"U2CDR_REPRO": switches, "U2CDR_THREADS": "1"})
    if imitation != "none":
        env["U2CDR_IMITATE_CPU"] = imitation
    cmd = [sys.executable, __file__, "--child", "--scale", str(scale), *specs]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=";".join(SETS), help="switch sets separated by ';'")
    ap.add_argument("--imitations", default="none,avx2,avx")
    ap.add_argument("--reps", type=int, default=1, help="timing repeats of each set on the native CPU")
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("specs", nargs="*", default=list(SPECS))
    args = ap.parse_args()
    if args.child:
        child(args.specs, args.scale)
        return
    sets = [s for s in args.sets.split(";") if s]
    imitations = [s for s in args.imitations.split(",") if s]
    results: dict[tuple[str, str], list[dict]] = {}
    times: dict[str, list[float]] = {s: [] for s in sets}
    for rep in range(max(1, args.reps)):
        for s in sets:  # alternate the sets inside each repeat so machine load hits them alike
            t = time.perf_counter()
            rows = run_set(s, "none", args.specs, args.scale)
            times[s].append(sum(r["fit_s"] for r in rows))
            if rep == 0:
                results[(s, "none")] = rows
                print(f"{s} / none: {time.perf_counter() - t:.0f} s", flush=True)
    for s in sets:
        for imitation in imitations:
            if imitation != "none":
                results[(s, imitation)] = run_set(s, imitation, args.specs, args.scale)
    base = statistics.median(times[sets[0]])
    others = [i for i in imitations if i != "none"]
    head = " | ".join(f"bit-identical to this CPU under imitated {i}" for i in others)
    print(f"\n| switches | {head} | fit time vs {sets[0]} |")
    print("|---|" + "---|" * len(others) + "---|")
    for s in sets:
        ref = [r["sha"] for r in results[(s, "none")]]
        cells = []
        for i in others:
            same = sum(a == b["sha"] for a, b in zip(ref, results[(s, i)], strict=True))
            cells.append(f"{same} of {len(ref)} configs")
        print(f"| {s} | {' | '.join(cells)} | {statistics.median(times[s]) / base:.2f} |")
    print("\nper config (sha, map_all, open-set acc):")
    for (s, imitation), rows in results.items():
        cells = "; ".join(f"{r['spec'].split(':')[0]} {r['sha']} {r['map_all']:.2f}/{r['acc']}" for r in rows)
        print(f"  {s} [{imitation}]: {cells}")


if __name__ == "__main__":
    main()
