"""The ``u2cdr-bench`` command line (typer + rich).

    u2cdr-bench run [--method uem] [--protocol open-set] [--dataset digits] [--pairs A:B,...]
        [--seeds 2024,...]
    u2cdr-bench table [--runs DIR] [--dataset D] [--protocol P] [--metric map_all] [--format markdown]
        [--paper]
    u2cdr-bench list methods|datasets|protocols|metrics|backbones
    u2cdr-bench protocol show DATASET SETTING [--split-seed 0]
    u2cdr-bench regress [--reference results/reference]
    u2cdr-bench data download|verify|info
    u2cdr-bench plot retrievals|embedding|results ...     (u2cdr_bench.plots.commands)
    u2cdr-bench retrieve --model MODEL --gallery FOLDER --query IMAGE... [--top 10] [--plot]

Any user mistake prints one sentence (``error: ...``) on stderr and exits with code 2, before any work
starts and with nothing written (:mod:`u2cdr_bench.entry`); docs/reliability.md lists the cases.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from .entry import SESSION, ErrorGroup
from .errors import UserError

app = typer.Typer(
    cls=ErrorGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark Universal Unsupervised Cross-Domain Retrieval: UEM (NeurIPS 2024) and baselines.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: no <bool> / <list[str]> type tags
)
protocol_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Inspect and generate category splits.",
    rich_markup_mode=None,
)
app.add_typer(protocol_app, name="protocol")

err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)

DEFAULT_RUNS = Path("runs")


def _default_method() -> str:
    from .methods import method_names

    return "uem" if "uem" in method_names() else "pretrained"


def _parse_seeds(text: str) -> list[int]:
    if any(not s.strip() for s in text.split(",")) and text.strip():
        raise UserError(
            f"--seeds has an empty item in '{text}'; write comma-separated integers, e.g. 2024,2025."
        )
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got '{text}'.") from None
    from .runner import check_seeds

    check_seeds(seeds)
    return seeds


def _parse_hparams(items: list[str] | None) -> dict[str, Any]:
    hp: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--hp takes KEY=VALUE, got '{item}'.")
        hp[key.strip()] = yaml.safe_load(value)
    return hp


def _data_options(
    data_dir: Path | None,
    cache_dir: Path | None,
    mode: str,
    backbone: str,
    n_views: int,
    quiet: bool,
    feature_views: str | None = None,
):
    from .data.registry import DataOptions

    if mode not in ("features", "finetune"):
        raise UserError(f"Unknown mode '{mode}'; valid choices: features, finetune.")
    if n_views < 0:
        raise UserError(f"--n-views must be >= 0, got {n_views}.")
    env_dir = os.environ.get("U2CDR_DATA")
    return DataOptions(
        data_dir=data_dir or (Path(env_dir) if env_dir else None),
        cache_dir=cache_dir,
        mode=mode,  # type: ignore[arg-type]
        backbone=backbone,
        n_views=n_views,
        quiet=quiet,
        feature_views=feature_views,
    )


@app.command()
def run(
    method: Annotated[str | None, typer.Option(metavar="NAME", help="Method name (default: uem).")] = None,
    protocol: Annotated[
        str, typer.Option(metavar="SETTING", help="Setting: close-set, partial or open-set.")
    ] = "open-set",
    dataset: Annotated[
        str, typer.Option(metavar="NAME", help="Dataset name, folder:PATH or npz:PATH.")
    ] = "digits",
    pairs: Annotated[
        str | None, typer.Option(metavar="Q:G,...", help="Directed pairs QUERY:GALLERY,... (default: all).")
    ] = None,
    seeds: Annotated[str, typer.Option(metavar="S,...", help="Comma-separated run seeds.")] = "2024",
    split_seed: Annotated[int, typer.Option(metavar="S", help="Seed of the class split.")] = 0,
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder for the run records.")
    ] = DEFAULT_RUNS,
    epochs_scale: Annotated[
        float, typer.Option(metavar="F", help="Multiply every stage's epochs (smoke runs).")
    ] = 1.0,
    hp: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="Hyper-parameter override (repeatable)."),
    ] = None,
    mode: Annotated[
        str, typer.Option(metavar="MODE", help="Input mode for real images: features or finetune.")
    ] = "features",
    backbone: Annotated[str, typer.Option(metavar="NAME", help="Backbone for real images.")] = "effnet-lite0",
    n_views: Annotated[
        int, typer.Option(metavar="N", help="Augmented views cached per image (features mode).")
    ] = 2,
    feature_views: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Feature-space views for features data without stored views: noise, dropout, mix or "
            "none (default: noise; docs/data.md).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Data home (default: $U2CDR_DATA).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Cache for built datasets and features.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON on stdout.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run finished runs.")] = False,
    reuse_stale: Annotated[
        bool,
        typer.Option("--reuse-stale", help="Keep records made by other code (another fingerprint) as done."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    launcher: Annotated[
        str,
        typer.Option(
            metavar="NAME", help="local (this process), slurm or submitit-local (jobs via submitit)."
        ),
    ] = "local",
    slurm_partition: Annotated[
        str | None, typer.Option(metavar="NAME", help="Slurm partition (launcher slurm).")
    ] = None,
    slurm_timeout_min: Annotated[
        int, typer.Option(metavar="MIN", help="Per-job time limit in minutes (submitit launchers).")
    ] = 60,
    save_embeddings: Annotated[
        bool, typer.Option(help="Also write the query/gallery embeddings beside the record (<hash>.npz).")
    ] = False,
    save_model: Annotated[
        bool, typer.Option(help="Also write the trained encoder beside the record (<hash>.model.pt).")
    ] = False,
) -> None:
    """Run a method on every directed pair (and seed) of a dataset under one setting."""
    from .launch import LAUNCHERS, submit
    from .outdir import OutFolder, check_writable
    from .runner import Runner, plan

    if slurm_timeout_min < 1:
        raise UserError(f"--slurm-timeout-min must be >= 1, got {slurm_timeout_min}.")
    options = _data_options(data_dir, cache_dir, mode, backbone, n_views, quiet, feature_views)
    configs = plan(
        method or _default_method(),
        dataset,
        protocol,
        pairs,
        _parse_seeds(seeds),
        options,
        split_seed=split_seed,
        epochs_scale=epochs_scale,
        hparams=_parse_hparams(hp),
    )
    if launcher not in LAUNCHERS:
        raise UserError(f"Unknown launcher '{launcher}'; valid choices: {', '.join(LAUNCHERS)}.")
    from .artifacts import SaveOptions

    check_writable(out_dir)
    save = SaveOptions(embeddings=save_embeddings, model=save_model)
    runner = Runner(options, out_dir, force=force, reuse_stale=reuse_stale, save=save)
    runner.preflight(configs)
    SESSION.out_dir, SESSION.records = Path(out_dir), runner.written
    folder = OutFolder(out_dir)
    try:
        if launcher == "local":
            from .cli_run import run_all

            records = run_all(runner, configs, err, quiet)
        else:
            todo = [c for c in configs if not runner.is_done(c)]
            slurm = {"timeout_min": slurm_timeout_min}
            if slurm_partition:
                slurm["slurm_partition"] = slurm_partition
            if not quiet:
                err.print(
                    f"submitting {len(todo)} job(s) with {launcher} ({len(configs) - len(todo)} done already)"
                )
            submit(todo, options, out_dir, launcher, slurm, save=vars(save) if save.any else None)
            records = [runner.existing(c) for c in configs]
    finally:
        folder.tidy()
    if as_json:
        out.print_json(json.dumps(records if len(records) != 1 else records[0], ensure_ascii=False))
    if not quiet or not as_json:
        console = err if as_json else out
        from .cli_run import summary

        summary(records, console)
        n_new = len(runner.written)
        console.print(
            f"{len(records)} record(s) in {out_dir} ({n_new} new, {len(records) - n_new} done before); "
            f"tabulate them with: u2cdr-bench table --runs {out_dir}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def table(
    runs: Annotated[Path, typer.Option(metavar="DIR", help="Folder of run records.")] = DEFAULT_RUNS,
    dataset: Annotated[str | None, typer.Option(metavar="NAME", help="Only this dataset.")] = None,
    protocol: Annotated[str | None, typer.Option(metavar="SETTING", help="Only this setting.")] = None,
    metric: Annotated[str, typer.Option(metavar="NAME", help="Metric to tabulate.")] = "map_all",
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="markdown, latex or csv.")
    ] = "markdown",
    paper: Annotated[
        bool, typer.Option("--paper", help="Add the paper's own rows where they exist.")
    ] = False,
    methods: Annotated[
        str | None, typer.Option(metavar="M,...", help="Comma-separated methods to show.")
    ] = None,
    versus: Annotated[
        str | None,
        typer.Option(
            metavar="ROW",
            help="Head-to-head instead: this method's average minus each other's, and pair wins. "
            "With --stats: the reference of the paired Wilcoxon tests.",
        ),
    ] = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="Follow each table with its statistics: Avg ± std over seeds, bootstrap 95 % interval, "
            "average ranks, Friedman + Nemenyi (docs/tables.md).",
        ),
    ] = False,
    cd_diagram: Annotated[
        Path | None,
        typer.Option(
            "--cd-diagram",
            metavar="DIR",
            help="Write a critical-difference diagram (PNG) per table with a Friedman test to DIR.",
        ),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Leave malformed records out (listed on stderr).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to this file.")
    ] = None,
    ablation: Annotated[
        list[str] | None,
        typer.Option(
            "--ablation",
            metavar="LABEL=DIR",
            help="Ablation table instead (repeat; one row per folder, the first is the reference): per "
            "setting the metric, open-set Acc / false rejection, UEM's merges, K and SN2M agreement, and "
            "the paired difference with its Wilcoxon p (docs/tables.md).",
        ),
    ] = None,
) -> None:
    """Render comparison tables in the paper's format from run records."""
    from .metrics import METRICS
    from .protocols import setting_names
    from .tables import render_tables, render_versus

    if fmt not in ("markdown", "latex", "csv"):
        raise UserError(f"Unknown format '{fmt}'; valid choices: csv, latex, markdown.")
    if metric not in METRICS:
        raise UserError(f"Unknown metric '{metric}'; valid choices: {', '.join(METRICS.names())}.")
    if protocol is not None and protocol not in setting_names():
        raise UserError(f"Unknown protocol '{protocol}'; valid choices: {', '.join(setting_names())}.")
    if output is not None:
        from .outdir import check_writable

        if output.is_dir():
            raise UserError(f"--output {output} is a folder; pass a file name.")
        check_writable(output.parent, "--output")
    if cd_diagram is not None:
        from .outdir import check_writable

        if cd_diagram.exists() and not cd_diagram.is_dir():
            raise UserError(f"--cd-diagram {cd_diagram} is a file; pass a folder.")
        check_writable(cd_diagram, "--cd-diagram")
    if ablation:
        if cd_diagram is not None:
            raise UserError("--ablation draws no critical-difference diagram; drop --cd-diagram.")
        if runs != DEFAULT_RUNS:
            raise UserError("--ablation reads its own folders (LABEL=DIR); drop --runs.")
        text = _ablation_table(
            ablation, dataset, protocol, metric, fmt, methods, skip_bad, versus, stats, paper
        )
        _write_table(text, output)
        return
    records = _load_for_table(runs, skip_bad)
    if not records:
        raise UserError(f"No run records in {runs}; run `u2cdr-bench run` first or pass --runs DIR.")
    method_list = [m.strip() for m in methods.split(",")] if methods else None
    if versus is not None and not stats:
        if paper:
            raise UserError("--versus compares run rows only; drop --paper.")
        text = render_versus(
            records, versus, dataset=dataset, setting=protocol, metric=metric, fmt=fmt, methods=method_list
        )
    else:
        text = render_tables(
            records,
            dataset=dataset,
            setting=protocol,
            metric=metric,
            fmt=fmt,
            paper=paper,
            methods=method_list,
            stats=stats,
            ref=versus,
        )
    if cd_diagram is not None:
        from .plots.cd import write_cd_diagrams
        from .tables import build_stats

        all_stats = build_stats(records, dataset, protocol, metric, method_list, versus)
        written = write_cd_diagrams(all_stats, cd_diagram)
        for path in written:
            err.print(f"wrote {path}")
        if not written:
            err.print("no critical-difference diagram: no table has a Friedman test (see --stats)")
    _write_table(text, output)


def _load_for_table(folder: Path, skip_bad: bool) -> list[dict]:
    """The records of ``folder``; a malformed one is a UserError naming ``--skip-bad``, or, with it, left out
    and named on stderr."""
    from .records import RecordError, load_records

    skipped: list[tuple[Path, str]] | None = [] if skip_bad else None
    try:
        records = load_records(folder, skipped=skipped)
    except RecordError as e:
        raise UserError(
            f"{str(e).rstrip('.')}; fix or remove it, or pass --skip-bad to leave it out."
        ) from None
    for _path, reason in skipped or []:
        print(f"skipped: {reason}", file=sys.stderr)
    return records


def _write_table(text: str, output: Path | None) -> None:
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _ablation_table(
    items: list[str],
    dataset: str | None,
    protocol: str | None,
    metric: str,
    fmt: str,
    methods: str | None,
    skip_bad: bool,
    versus: str | None,
    stats: bool,
    paper: bool,
) -> str:
    """``table --ablation``: parse ``LABEL=DIR`` items, load and filter each folder, render the table."""
    from .tables.ablation import group_by_method, render_ablation

    for flag, used in (("--versus", versus is not None), ("--stats", stats), ("--paper", paper)):
        if used:
            raise UserError(f"--ablation makes its own comparison; drop {flag}.")
    wanted = {m.strip() for m in methods.split(",")} if methods else None
    parsed: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for item in items:  # every item is checked before any folder is read
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            raise UserError(f"--ablation {item!r}: expected LABEL=DIR (a label and a records folder).")
        if label in seen:
            raise UserError(f"--ablation label {label!r} is given twice; each row needs its own label.")
        if not Path(folder).is_dir():
            raise UserError(f"--ablation {item!r}: records folder {folder} does not exist.")
        seen.add(label)
        parsed.append((item, label, folder))
    groups: list[tuple[str, list[dict]]] = []
    for item, label, folder in parsed:
        recs = _load_for_table(Path(folder), skip_bad)
        kept = [
            r
            for r in recs
            if (dataset is None or r["config"]["dataset"] == dataset)
            and (protocol is None or r["config"]["setting"] == protocol)
            and (wanted is None or r["config"]["method"] in wanted)
        ]
        if not kept:
            present = sorted({f"{r['config']['method']} on {r['config']['dataset']}" for r in recs})
            raise UserError(
                f"--ablation {item!r}: no records in {folder} match the filters (--dataset, --protocol, "
                f"--methods); it holds {', '.join(present) or 'no records'}."
            )
        recs = kept
        groups += group_by_method(label, recs)
    return render_ablation(groups, metric=metric, fmt=fmt)


LISTABLE = ("methods", "datasets", "protocols", "metrics", "backbones")


@app.command("list")
def list_(
    what: Annotated[
        str, typer.Argument(metavar="WHAT", help="methods, datasets, protocols, metrics or backbones")
    ],
) -> None:
    """List registered methods, datasets, protocols (settings), metrics or backbones.

    Methods and datasets are listed without importing torch (so this is quick); backbones load it, to ask
    torchvision and open_clip which weights exist.
    """
    # methods and datasets are read from their sources by u2cdr_bench.catalog
    rows: list[tuple[str, str]]
    if what == "methods":
        from .catalog import method_groups

        groups = method_groups()
        width = max(len(n) for _, rows in groups for n, _ in rows)
        for group, rows in groups:
            out.print(f"{group}:", markup=False)
            for name, summary in rows:
                out.print(f"  {name.ljust(width)}  {summary}", markup=False)
        return
    elif what == "datasets":
        from .catalog import dataset_rows

        rows = dataset_rows()
        rows += [
            ("folder:PATH", "custom images: one sub-folder per domain, one per class inside"),
            ("npz:PATH", "custom features: features_<domain>, labels_<domain>, class_names"),
        ]
    elif what == "protocols":
        from .protocols import settings

        rows = [(e.name, e.summary) for e in settings()]
    elif what == "metrics":
        from .metrics import METRICS

        rows = [(e.name, e.summary) for e in METRICS]
    elif what == "backbones":
        from .backbones import BACKBONES

        rows = [(e.name, e.summary) for e in BACKBONES]
    else:
        raise UserError(f"Unknown list '{what}'; valid choices: {', '.join(LISTABLE)}.")
    width = max(len(n) for n, _ in rows)
    for name, summary in rows:
        out.print(f"{name.ljust(width)}  {summary}", markup=False)


@protocol_app.command("show")
def protocol_show(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help="Dataset name.")],
    setting: Annotated[str, typer.Argument(metavar="SETTING", help="close-set, partial or open-set.")],
    split_seed: Annotated[int, typer.Option(metavar="S", help="Seed of the class split.")] = 0,
) -> None:
    """Show the class lists of one (dataset, setting, split seed) and their hash."""
    from .data.registry import get_dataset
    from .protocols import get_protocol
    from .runner import check_seed

    check_seed(split_seed, "--split-seed")

    p = get_protocol(get_dataset(dataset), setting, split_seed)
    out.print(
        f"dataset: {dataset}\nsetting: {p.setting}\nsplit seed: {p.split_seed}\nhash: {p.hash}", markup=False
    )
    out.print(f"query classes ({len(p.query_classes)}): {', '.join(p.query_classes)}", markup=False)
    out.print(f"gallery classes ({len(p.gallery_classes)}): {', '.join(p.gallery_classes)}", markup=False)
    out.print(f"shared classes ({len(p.shared_classes)}): {', '.join(p.shared_classes)}", markup=False)
    if p.query_private:
        out.print(
            f"query-private classes ({len(p.query_private)}): {', '.join(p.query_private)}", markup=False
        )


@protocol_app.command("generate")
def protocol_generate(
    check: Annotated[
        bool, typer.Option("--check", help="Only check that the committed lists are up to date.")
    ] = False,
) -> None:
    """(Re)generate the committed class lists of every built-in dataset (protocols/generated/)."""
    from .data.registry import DATASETS, dataset_names
    from .protocols import generated_path, render_generated

    dataset_names()
    stale = []
    for entry in DATASETS:
        path = generated_path(entry.name)
        text = render_generated(entry.obj)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            err.print(f"wrote {path}")
    if check and stale:
        raise UserError(
            f"Committed class lists are stale: {', '.join(stale)}; run `u2cdr-bench protocol generate`."
        )


@app.command()
def regress(
    reference: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Reference records (default: results/reference here, else in the package's repository).",
        ),
    ] = None,
    tolerances: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Measured tolerances (default: reference_tolerance.json beside the folder)."
        ),
    ] = None,
    methods: Annotated[
        str | None, typer.Option(metavar="M,...", help="Comma-separated methods (default: all).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Re-run the reference grid; fail when a method's cell average leaves its measured spread."""
    from .regress import machine_lines, resolve_reference_dir, run_regression

    reference = resolve_reference_dir(reference)
    for line in machine_lines(reference):
        err.print(line, markup=False)
    wanted = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    failures = run_regression(reference, tolerances, console=err, quiet=quiet, methods=wanted)
    if failures:
        err.print(f"[red]{len(failures)} regression(s) beyond the measured spread[/red]")
        for line in failures:
            err.print(f"  {line}", markup=False)
        raise typer.Exit(1)
    err.print("no regression")


def _mount_data_app() -> None:
    try:
        from .data_cli import data_app
    except ModuleNotFoundError as e:  # pragma: no cover - while data_cli is being written
        if e.name != "u2cdr_bench.data_cli":
            raise
        return
    app.add_typer(data_app, name="data", help="Download, verify and describe datasets.")


_mount_data_app()


def _mount_outputs_apps() -> None:
    """``plot retrievals|embedding|results`` and ``retrieve`` (u2cdr_bench.plots, u2cdr_bench.retrieve)."""
    from .plots.commands import plot_app
    from .retrieve import retrieve_command

    app.add_typer(plot_app, name="plot", help="Draw retrievals, embedding maps and result charts.")
    app.command("retrieve")(retrieve_command)


_mount_outputs_apps()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors become one sentence and exit code 2 (:mod:`.entry`)."""
    return typer.main.get_command(app).main(args=argv, prog_name="u2cdr-bench", standalone_mode=False)


def _console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
