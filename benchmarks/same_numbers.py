"""Do two versions of the code compute the same numbers? Runs the same configs under both and compares.

Each config (``method:setting:query:gallery``) runs in a fresh subprocess, once with this checkout and once
with the package of ``--reference`` (a checkout of another commit, e.g. ``git worktree add --detach
/tmp/base <commit>``; its ``baselines/`` folder is linked in as ``u2cdr_bench/baselines`` if missing),
under the same kernel switches (``U2CDR_REPRO``) and one thread. Printed per config: the sha256 of the
query and gallery embeddings and the open-set flags, ``map_all`` and the CPU seconds of both runs, and
whether the embeddings are bit-identical. Exit status 1 when any config differs.

    .venv/bin/python benchmarks/same_numbers.py --reference /tmp/base --dataset digits \\
        --configs dgdir:open-set:optdigits:printed,ucdir:partial:mnist:printed --epochs-scale 0.1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(dataset: str, specs: list[str], scale: float, data_dir: str | None) -> None:
    """Run ``specs`` in this process; one JSON line each (sha of embeddings + flags, metrics, CPU s)."""
    import numpy as np

    import u2cdr_bench.runner as runner_mod
    from u2cdr_bench.data.registry import DataOptions

    seen: dict[str, str] = {}
    evaluate = runner_mod.evaluate

    def capture(qf, ql, gf, gl, private_pred=None):
        data = np.ascontiguousarray(qf).tobytes() + np.ascontiguousarray(gf).tobytes()
        if private_pred is not None:
            data += np.asarray(private_pred).tobytes()
        seen["sha"] = hashlib.sha256(data).hexdigest()[:16]
        return evaluate(qf, ql, gf, gl, private_pred=private_pred)

    runner_mod.evaluate = capture
    options = DataOptions(data_dir=Path(data_dir) if data_dir else None, quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        runner = runner_mod.Runner(options, Path(tmp), force=True)
        for spec in specs:
            method, setting, q, g = spec.split(":")
            pair = f"{q}:{g}"
            (cfg,) = runner_mod.plan(method, dataset, setting, pair, [2024], options, epochs_scale=scale)
            c0 = time.process_time()
            rec = runner.run(cfg)
            print(
                json.dumps(
                    {
                        "spec": spec,
                        "sha": seen["sha"],
                        "map_all": rec["metrics"]["map_all"],
                        "openset_accuracy": rec["metrics"].get("openset_accuracy"),
                        "final_domain_acc": rec["method_info"].get("final_domain_acc"),
                        "cpu_s": round(time.process_time() - c0, 2),
                        "module": runner_mod.__file__,
                    }
                ),
                flush=True,
            )


def run(code_root: Path | None, args: argparse.Namespace) -> dict[str, dict]:
    env = dict(os.environ, U2CDR_THREADS="1")
    if code_root is not None:
        link = code_root / "u2cdr_bench" / "baselines"
        if not link.exists() and (code_root / "baselines").is_dir():
            link.symlink_to(Path("..") / "baselines")
        env["PYTHONPATH"] = str(code_root)
    cmd = [sys.executable, __file__, "--child", "--dataset", args.dataset, "--configs", args.configs]
    cmd += ["--epochs-scale", str(args.epochs_scale)]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"error: the run with {code_root or 'this checkout'} failed:\n{out.stderr[-3000:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["spec"]: r for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, help="checkout of the reference commit")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--configs", required=True, help="method:setting:query:gallery,...")
    ap.add_argument("--epochs-scale", type=float, default=0.1)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.dataset, args.configs.split(","), args.epochs_scale, args.data_dir)
        return
    if args.reference is None:
        raise SystemExit("error: --reference is required (a checkout of the commit to compare with).")
    new = run(None, args)
    old = run(args.reference.resolve(), args)
    differ = 0
    for spec in args.configs.split(","):
        a, b = new[spec], old[spec]
        same = a["sha"] == b["sha"]
        differ += not same
        print(
            f"{spec:45s} {'same' if same else 'DIFFERENT':9s} sha {a['sha']} / {b['sha']}  "
            f"map_all {a['map_all']} / {b['map_all']}  cpu {a['cpu_s']} / {b['cpu_s']} s (this / reference)"
        )
        if a.get("final_domain_acc") != b.get("final_domain_acc"):
            print(f"{'':45s} final_domain_acc {a.get('final_domain_acc')} / {b.get('final_domain_acc')}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
