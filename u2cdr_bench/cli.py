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

Any user mistake prints one sentence (``error: ...``) on stderr and exits with code 2.
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
from rich.table import Table

from .errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark Universal Unsupervised Cross-Domain Retrieval: UEM (NeurIPS 2024) and baselines.",
    pretty_exceptions_enable=False,
)
protocol_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Inspect and generate category splits."
)
app.add_typer(protocol_app, name="protocol")

err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)

DEFAULT_RUNS = Path("runs")


def _default_method() -> str:
    from .methods import method_names

    return "uem" if "uem" in method_names() else "pretrained"


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got '{text}'.") from None
    if not seeds:
        raise UserError("--seeds is empty; give e.g. --seeds 2024,2025,2026.")
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
    data_dir: Path | None, cache_dir: Path | None, mode: str, backbone: str, n_views: int, quiet: bool
):
    from .data.registry import DataOptions

    if mode not in ("features", "finetune"):
        raise UserError(f"Unknown mode '{mode}'; valid choices: features, finetune.")
    env_dir = os.environ.get("U2CDR_DATA")
    return DataOptions(
        data_dir=data_dir or (Path(env_dir) if env_dir else None),
        cache_dir=cache_dir,
        mode=mode,  # type: ignore[arg-type]
        backbone=backbone,
        n_views=n_views,
        quiet=quiet,
    )


@app.command()
def run(
    method: Annotated[str | None, typer.Option(help="Method name (default: uem).")] = None,
    protocol: Annotated[str, typer.Option(help="Setting: close-set, partial or open-set.")] = "open-set",
    dataset: Annotated[str, typer.Option(help="Dataset name, folder:PATH or npz:PATH.")] = "digits",
    pairs: Annotated[
        str | None, typer.Option(help="Directed pairs QUERY:GALLERY,... (default: all).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated run seeds.")] = "2024",
    split_seed: Annotated[int, typer.Option(help="Seed of the class split.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the run records.")] = DEFAULT_RUNS,
    epochs_scale: Annotated[float, typer.Option(help="Multiply every stage's epochs (smoke runs).")] = 1.0,
    hp: Annotated[
        list[str] | None, typer.Option(help="Hyper-parameter override KEY=VALUE (repeatable).")
    ] = None,
    mode: Annotated[str, typer.Option(help="Input mode for real images: features or finetune.")] = "features",
    backbone: Annotated[str, typer.Option(help="Backbone for real images.")] = "effnet-lite0",
    n_views: Annotated[int, typer.Option(help="Augmented views cached per image (features mode).")] = 2,
    data_dir: Annotated[Path | None, typer.Option(help="Data home (default: $U2CDR_DATA).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache for built datasets and features.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON on stdout.")] = False,
    force: Annotated[bool, typer.Option(help="Re-run finished runs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    launcher: Annotated[
        str, typer.Option(help="local (this process), slurm or submitit-local (jobs via submitit).")
    ] = "local",
    slurm_partition: Annotated[str | None, typer.Option(help="Slurm partition (launcher slurm).")] = None,
    slurm_timeout_min: Annotated[
        int, typer.Option(help="Per-job time limit in minutes (submitit launchers).")
    ] = 60,
    save_embeddings: Annotated[
        bool, typer.Option(help="Also write the query/gallery embeddings beside the record (<hash>.npz).")
    ] = False,
    save_model: Annotated[
        bool, typer.Option(help="Also write the trained encoder beside the record (<hash>.model.pt).")
    ] = False,
) -> None:
    """Run a method on every directed pair (and seed) of a dataset under one setting."""
    from .runner import Runner, plan

    options = _data_options(data_dir, cache_dir, mode, backbone, n_views, quiet)
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
    from .launch import LAUNCHERS, submit

    if launcher not in LAUNCHERS:
        raise UserError(f"Unknown launcher '{launcher}'; valid choices: {', '.join(LAUNCHERS)}.")
    from .artifacts import SaveOptions

    save = SaveOptions(embeddings=save_embeddings, model=save_model)
    runner = Runner(options, out_dir, force=force, save=save)
    if launcher == "local":
        records = _run_all(runner, configs, quiet)
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
    if as_json:
        out.print_json(json.dumps(records if len(records) != 1 else records[0], ensure_ascii=False))
    if not quiet or not as_json:
        _summary(records, err if as_json else out)


def _run_all(runner, configs, quiet: bool) -> list[dict]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    records: list[dict] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=True,
    ) as prog:
        overall = prog.add_task("runs", total=len(configs))
        for i, cfg in enumerate(configs, 1):
            pair = f"{cfg.query}→{cfg.gallery}"
            label = f"[{i}/{len(configs)}] {cfg.method} {cfg.dataset} {cfg.setting} {pair} seed {cfg.seed}"
            if runner.is_done(cfg):
                rec = runner.existing(cfg)
                records.append(rec)
                if not quiet:
                    prog.console.print(f"{label}: done already (use --force to re-run)")
                prog.advance(overall)
                continue
            stage_task = prog.add_task(label, total=None)

            def progress(
                stage: str, step: int, total: int, info: dict[str, float], _t=stage_task, _l=label
            ) -> None:
                loss = " ".join(f"{k}={v:.3f}" for k, v in list(info.items())[:4])
                prog.update(
                    _t, description=f"{_l} · {stage} {step}/{total} {loss}", total=total, completed=step
                )

            rec = runner.run(cfg, progress=progress)
            prog.remove_task(stage_task)
            records.append(rec)
            if not quiet:
                m = rec["metrics"]
                extra = (
                    f", open-set acc {m['openset_accuracy']:.1f}"
                    if m.get("openset_accuracy") is not None
                    else ""
                )
                prog.console.print(
                    f"{label}: mAP@All {m['map_all']:.1f}{extra} ({rec['timings']['total_s']:.1f} s)"
                )
            prog.advance(overall)
    return records


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.1f}"


def _summary(records: list[dict], console: Console) -> None:
    if not records:
        return
    keys = ["map_all", "p@1", "p@5", "p@15", "map_at_r", "openset_accuracy", "false_rejection"]
    keys = [k for k in keys if any(r["metrics"].get(k) is not None for r in records)]
    table = Table(title="u2cdr-bench results", title_justify="left")
    for col in ["method", "setting", "pair", "seed", *keys, "time (s)"]:
        table.add_column(col, justify="right" if col not in ("method", "setting", "pair") else "left")
    for r in records:
        c = r["config"]
        table.add_row(
            c["method"],
            c["setting"],
            r["task"]["pair"],
            str(c["seed"]),
            *[_fmt(r["metrics"].get(k)) for k in keys],
            f"{r['timings']['total_s']:.1f}",
        )
    console.print(table)


@app.command()
def table(
    runs: Annotated[Path, typer.Option(help="Folder of run records.")] = DEFAULT_RUNS,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only this setting.")] = None,
    metric: Annotated[str, typer.Option(help="Metric to tabulate.")] = "map_all",
    fmt: Annotated[str, typer.Option("--format", help="markdown, latex or csv.")] = "markdown",
    paper: Annotated[bool, typer.Option(help="Add the paper's own rows where they exist.")] = False,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods to show.")] = None,
    versus: Annotated[
        str | None,
        typer.Option(help="Head-to-head instead: this method's average minus each other's, and pair wins."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Render comparison tables in the paper's format from run records."""
    from .metrics import METRICS
    from .protocols import setting_names
    from .records import load_records
    from .tables import render_tables, render_versus

    if fmt not in ("markdown", "latex", "csv"):
        raise UserError(f"Unknown format '{fmt}'; valid choices: csv, latex, markdown.")
    if metric not in METRICS:
        raise UserError(f"Unknown metric '{metric}'; valid choices: {', '.join(METRICS.names())}.")
    if protocol is not None and protocol not in setting_names():
        raise UserError(f"Unknown protocol '{protocol}'; valid choices: {', '.join(setting_names())}.")
    records = load_records(runs)
    if not records:
        raise UserError(f"No run records in {runs}; run `u2cdr-bench run` first or pass --runs DIR.")
    method_list = [m.strip() for m in methods.split(",")] if methods else None
    if versus is not None:
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
        )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


LISTABLE = ("methods", "datasets", "protocols", "metrics", "backbones")


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, datasets, protocols, metrics or backbones")],
) -> None:
    """List registered methods, datasets, protocols (settings), metrics or backbones."""
    rows: list[tuple[str, str]]
    if what == "methods":
        from .methods import load_methods, method_names

        reg = load_methods()
        rows = [(n, reg.entry(n).summary) for n in method_names()]
    elif what == "datasets":
        from .data.registry import DATASETS, dataset_names

        dataset_names()
        rows = [
            (e.name, f"{e.summary} [domains: {', '.join(f'{d.name} ({d.abbrev})' for d in e.obj.domains)}]")
            for e in DATASETS
        ]
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
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    setting: Annotated[str, typer.Argument(help="close-set, partial or open-set.")],
    split_seed: Annotated[int, typer.Option(help="Seed of the class split.")] = 0,
) -> None:
    """Show the class lists of one (dataset, setting, split seed) and their hash."""
    from .data.registry import get_dataset
    from .protocols import get_protocol

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
    check: Annotated[bool, typer.Option(help="Only check that the committed lists are up to date.")] = False,
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
    reference: Annotated[Path, typer.Option(help="Folder of reference records.")] = Path("results/reference"),
    tolerance: Annotated[
        float, typer.Option(help="Allowed drop below the reference, in metric points.")
    ] = 2.0,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Re-run the reference grid and fail when a metric falls more than TOLERANCE below its reference."""
    from .regress import run_regression

    failures = run_regression(reference, tolerance, console=err, quiet=quiet)
    if failures:
        err.print(f"[red]{len(failures)} metric(s) regressed beyond {tolerance} points[/red]")
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
    """Entry point: run the app, turning user errors into one sentence and exit code 2."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int):
            return rv
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return 2
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _console_main() -> None:
    sys.exit(main())
