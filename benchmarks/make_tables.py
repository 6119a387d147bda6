"""Regenerate the committed result tables from the committed records, with ``u2cdr-bench table`` itself.

Writes ``results/<name>.md`` for each results grid below (one section per metric: mAP@All with open-set
accuracy, then P@1, then the binary reading of open-set Acc; UEM against each method, ``u2cdr-bench table
--versus uem``; run time per method) and the UEM table block of the README between its
``<!-- results:... -->`` markers.
``tests/test_results_tables.py`` re-renders them and fails when a committed file is stale.

Statistics: a grid whose records hold at least two seeds also gets a "Statistics" section (``u2cdr-bench table
--stats --versus uem``: Avg ± std over seeds, bootstrap interval, average ranks, Friedman + Nemenyi, paired
Wilcoxon tests; docs/tables.md) and one critical-difference diagram per setting, written (not checked: PNG
bytes depend on the matplotlib build) to ``results/<name>-cd/``. One-seed grids get neither, so their pages
are unchanged.

    .venv/bin/python benchmarks/make_tables.py            # rewrite the files
    .venv/bin/python benchmarks/make_tables.py --check    # exit 1 when a file is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate
from typer.testing import CliRunner

from u2cdr_bench.cli import app
from u2cdr_bench.methods import method_names
from u2cdr_bench.plots.cd import cd_filename, write_cd_diagrams
from u2cdr_bench.records import load_records
from u2cdr_bench.tables import build_stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from grid_times import summarize  # noqa: E402

UEM_ROWS = "pretrained,uem,uem-no-pm,uem-no-sel,uem-no-spda,uem-no-sn2m"


@dataclass(frozen=True)
class Grid:
    name: str  # results/<name>/ holds the records, results/<name>.md the tables
    title: str
    intro: str


GRIDS: tuple[Grid, ...] = (
    Grid(
        "digits",
        "Results on the embedded digits benchmark",
        "Every registered method, 6 directed pairs × 3 settings, split seed 0, each method's default digits"
        " schedule (image mode: the small CNN trained from scratch, `--epochs-scale 1`). **Issue 15's "
        "three-seed regeneration is under way** (`--seeds 2024,2025,2026`, begun 2026-12-04). **Current "
        "code, three seeds on every cell:** the training-free rows (`pretrained`, `pretrained-cosine`, "
        "`center-l2`, `center-whiten`, `kmeans-match`), `uem` and its four ablations (re-run 2026-12-04/05 "
        "with UEM's new defaults, docs/uem.md, The defaults), and the baselines `source-only`, `dann`, "
        "`pcs`, `protonce`, `protonce-joint`, `darl`, `dn2a` and `coda` (re-run 2026-12-05/06 on an AMD "
        "EPYC machine). **Older "
        "code:** every other trained "
        "baseline row holds one seed-2024 record made before its official settings (issue 11, "
        "docs/baselines.md lists what moves) and before the current generic open-set detector "
        "(`pretrained`'s Acc, re-run, moved from 43.4 to 62.4 with the same mAP@All); a row marked † mixes "
        "records of both kinds while its re-run is under way. The `n=` of each table says how many seeds a "
        "cell has; `benchmarks/versus_current.py results/digits` compares the current-code records alone. "
        "Seed 2024 was the seed UEM's defaults were chosen on, and it is UEM's best in partial (35.4 "
        "against 31.3 and 32.8). Produced by `benchmarks/run_grid.py --dataset digits --out results/digits "
        "--seeds 2024,2025,2026`; the records are in `results/digits/`. One seed ranks nothing: differences"
        " of a few points are within the seed spread (docs/reliability.md).",
    ),
    Grid(
        "pacs",
        "Results on PACS (real images)",
        "PACS from `../shared/data/pacs`, 12 directed pairs × 3 settings, split seed 0, features mode: "
        "frozen ImageNet EfficientNet-Lite0 (`effnet-lite0`) features with a trainable head, the features "
        "profile of "
        "every method. Produced by `benchmarks/run_grid.py --dataset pacs --data-dir ../shared/data --out "
        "results/pacs --seeds 2024,2025,2026`; the records are in `results/pacs/`. **Issue 15's three-seed "
        "regeneration is under way.** **Current code, seeds 2024, 2025 and 2026 on every cell** (run "
        "2026-12-05/06 on an AMD EPYC machine): every training-free row (`pretrained`, `pretrained-cosine`, "
        "`center-l2`, `center-whiten`, `kmeans-match`), `uem` (docs/uem.md, The defaults), `ucdir`, "
        "`coda`, `dann` and `darl-nn`. **Current code, seed 2024 only** (structure head, official "
        "settings of issue 11, run 2026-12-03/05): `uem`'s four ablations, `darl`, and `dgdir` "
        "in close-set (re-run "
        "with its cached Fourier and phase views, issue 18: 36.3 → 42.3). **Older code:** every other "
        "trained row or setting was made with the randomly initialised head that the features mode no longer "
        "uses by default (the structure head, issue 10: docs/uem.md gives its effect at initialisation); "
        "their re-run with the final code is the rest of issue 15's regeneration, so rows of the two kinds "
        "are not comparable. The `n=` of each table says how many seeds a cell has; "
        "`benchmarks/versus_current.py results/pacs --dataset pacs --data-dir ../shared/data` compares the "
        "current-code records alone. One seed ranks nothing: differences of a few points are within the "
        "seed spread. Another class split (split seed 1, partial and open-set, seed 2024, `uem`, "
        "`pretrained`, `ucdir`, `coda`, `kmeans-match`) is in `results/pacs-split1/`: it moves a setting's "
        "average by 1.4 to 12.2 points against a seed std of at most 1.6, keeps the order of those five "
        "rows and moves UEM's gaps to the other three by 4 to 7 points (docs/tables.md, The class split "
        "beside the seed).",
    ),
)


def cli_table(args: list[str]) -> str:
    """Output of ``u2cdr-bench table ARGS`` (the command users run)."""
    res = CliRunner().invoke(app, ["table", *args])
    if res.exit_code != 0:
        raise SystemExit(f"u2cdr-bench table {' '.join(args)} failed: {res.output}")
    return res.stdout.rstrip() + "\n"


def n_seeds(records: list[dict]) -> int:
    return len({r["config"]["seed"] for r in records})


def stats_args(runs: Path, methods: list[str]) -> list[str]:
    """``table`` arguments of the statistics section: ``--stats``, with ``--versus uem`` when UEM ran."""
    return ["--runs", str(runs), "--stats", *(["--versus", "uem"] if "uem" in methods else [])]


def stats_section(grid: Grid, runs: Path, records: list[dict], methods: list[str]) -> list[str]:
    """The "Statistics" section of a page (records with ≥ 2 seeds): stats tables, then CD diagrams."""
    out = [
        "## Statistics (mAP@All; open-set: shared-set mAP@All)\n",
        "`u2cdr-bench table --stats --versus uem`; what each statistic assumes is in `docs/tables.md`.\n",
        cli_table(stats_args(runs, methods)),
    ]
    ref = "uem" if "uem" in methods else None
    for ts in build_stats(records, ref=ref):
        if ts.cd is not None:
            name = cd_filename(ts)
            out.append(f"![critical-difference diagram, {ts.table.setting}]({grid.name}-cd/{name})\n")
    return out


def write_diagrams(root: Path = ROOT) -> list[Path]:
    """The CD diagrams of every grid with ≥ 2 seeds, under ``results/<name>-cd/``."""
    written: list[Path] = []
    for grid in GRIDS:
        runs = root / "results" / grid.name
        if not runs.is_dir() or not any(runs.glob("*.json")):
            continue
        records = load_records(runs)
        if n_seeds(records) >= 2:
            ref = "uem" if any(r["config"]["method"] == "uem" for r in records) else None
            written += write_cd_diagrams(build_stats(records, ref=ref), root / "results" / f"{grid.name}-cd")
    return written


def grid_markdown(grid: Grid, root: Path = ROOT) -> str | None:
    runs = root / "results" / grid.name
    if not runs.is_dir() or not any(runs.glob("*.json")):
        return None
    records = load_records(runs)
    present = {r["config"]["method"] for r in records}
    methods = [m for m in method_names() if m in present]
    missing = [m for m in method_names() if m not in present]
    held = f"The folder holds {len(records)} records of {len(methods)} methods."
    if missing:
        held += f" Not run yet: {', '.join(missing)}."
    held += " A row without an Avg lacks some pairs."
    out = [
        f"# {grid.title}\n",
        grid.intro + "\n",
        held + "\n",
        "Regenerate this file with `benchmarks/make_tables.py`.\n",
    ]
    for metric, heading in (
        ("map_all", "mAP@All (open-set: shared-set mAP@All / open-set Acc)"),
        ("p@1", "P@1"),
    ):
        out.append(f"## {heading}\n")
        out.append(cli_table(["--runs", str(runs), "--metric", metric]))
        if metric == "map_all" and n_seeds(records) >= 2:
            out += stats_section(grid, runs, records, methods)
    out.append("## Open-set Acc, the binary reading\n")
    out.append(
        "Share of all open-set queries whose private/shared flag is right (`openset_binary_accuracy`, "
        "paper-spec §7 #17); the mAP@All tables above use the other reading, the share of private queries "
        "flagged. A detector that flags nothing scores the share of shared queries.\n"
    )
    out.append(
        cli_table(["--runs", str(runs), "--metric", "openset_binary_accuracy", "--protocol", "open-set"])
    )
    if "uem" in methods and len(methods) > 1:
        out.append("## UEM against each method\n")
        out.append(cli_table(["--runs", str(runs), "--versus", "uem"]))
    out.append("## Run time per method\n")
    out.append(
        "From the records' `timings.total_s` (`benchmarks/grid_times.py`): two to four single-threaded grid "
        "processes shared this 2-core machine, so absolute seconds are pessimistic. Ratios to `uem` on the "
        "same (setting, pair) take out the pair's size but not the load, which differed between methods "
        "(up to 4 processes on 2 cores for the last ones run); `benchmarks/bench_methods.py` times every "
        "method on one pair in one process.\n"
    )
    headers = ["method", "runs", "mean s", "median s", "max s", "× uem", "total min"]
    out.append(tabulate(summarize(records), headers=headers, tablefmt="github") + "\n")
    return "\n".join(out)


def readme_block() -> str | None:
    runs = ROOT / "results" / "digits"
    if not runs.is_dir() or not any(runs.glob("*.json")):
        return None
    parts = []
    for metric in ("map_all", "p@1"):
        parts.append(cli_table(["--runs", str(runs), "--metric", metric, "--methods", UEM_ROWS]))
    return "\n".join(parts)


def replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- results:{name} start -->", f"<!-- results:{name} end -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"README.md has no {start} ... {end} block")
    return pat.sub(lambda _: f"{start}\n{body}{end}", text)


def expected_files() -> dict[Path, str]:
    """Path → the content it should have."""
    files: dict[Path, str] = {}
    for grid in GRIDS:
        md = grid_markdown(grid)
        if md is not None:
            files[ROOT / "results" / f"{grid.name}.md"] = md
    block = readme_block()
    if block is not None:
        readme = ROOT / "README.md"
        files[readme] = replace_block(readme.read_text(), "digits-uem", block)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    args = ap.parse_args()
    stale = []
    for path, text in expected_files().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text)
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(map(str, stale)) or 'none'}")
    if not args.check:
        for path in write_diagrams():
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
