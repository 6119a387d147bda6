"""``u2cdr-bench data ...``: fetch, check and describe the real datasets (a Typer sub-app, ``data_app``).

Commands::

    u2cdr-bench data download DATASET [--data-dir DIR] [--domain D ...] [--keep-archives] [--quiet]
    u2cdr-bench data verify DATASET [--data-dir DIR] [--no-images] [--quiet]
    u2cdr-bench data info [--data-dir DIR]

``--data-dir`` defaults to ``$U2CDR_DATA``; the data home holds one folder per dataset (``pacs/``,
``office31/``, ``officehome/``, ``domainnet/``). ``verify`` exits 1 when it finds a problem; user mistakes
(unknown dataset, no data dir, failed download) raise :class:`~u2cdr_bench.errors.UserError`, which the main
CLI turns into one sentence and exit code 2.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["data_app"]

data_app = typer.Typer(
    name="data",
    help="Real datasets: download (checksummed, resumable), verify, info.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="U2CDR_DATA",
        metavar="DIR",
        help="Data home, one folder per dataset ($U2CDR_DATA).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress output.")]


def _home(data_dir: Path | None, dataset: str | None = None) -> Path:
    """The data home; the dataset name is checked first, so an unknown name is the error reported."""
    from .data.real import data_home
    from .data.registry import DataOptions

    if dataset is not None:
        from .data.manifests import get_manifest

        get_manifest(dataset)
    return data_home(DataOptions(data_dir=data_dir))


@data_app.command("download")
def download(
    dataset: Annotated[
        str, typer.Argument(metavar="DATASET", help="pacs, office31, officehome or domainnet.")
    ],
    data_dir: DataDir = None,
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", metavar="DOMAIN", help="Only the archives of this domain (repeatable)."),
    ] = None,
    keep_archives: Annotated[
        bool, typer.Option("--keep-archives", help="Keep the archives after unpacking.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Download, checksum and unpack a dataset into DATA_DIR/DATASET (resumes interrupted downloads)."""
    from .data.download import download_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = download_dataset(
                dataset,
                _home(data_dir, dataset),
                domains=domain or None,
                keep_archives=keep_archives,
                quiet=quiet,
            )
        finally:
            for w in caught:
                typer.echo(f"note: {w.message}", err=True)
    if not quiet:
        for line in report.lines():
            typer.echo(line)


@data_app.command("verify")
def verify(
    dataset: Annotated[
        str, typer.Argument(metavar="DATASET", help="pacs, office31, officehome or domainnet.")
    ],
    data_dir: DataDir = None,
    images: Annotated[bool, typer.Option("--images/--no-images", help="Decode every image.")] = True,
    quiet: Quiet = False,
) -> None:
    """Check image counts, classes and unreadable files of a dataset (exit 1 on a problem)."""
    from .data.real import verify_dataset

    report = verify_dataset(dataset, _home(data_dir, dataset), check_images=images, quiet=quiet)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise SystemExit(1)  # passes through click's standalone_mode=False unchanged


@data_app.command("info")
def info(data_dir: DataDir = None) -> None:
    """Datasets (domains, classes, expected counts, archives, presence under DATA_DIR), backbones, caches."""
    from .backbones import BACKBONES, weights_dir
    from .data.manifests import MANIFESTS
    from .data.real import dataset_root, find_domain_dir
    from .data.registry import DataOptions
    from .features import cache_root

    home = data_dir
    out: list[str] = [
        f"data home: {home if home is not None else '(not set: --data-dir or $U2CDR_DATA)'}",
        "",
    ]
    for m in MANIFESTS.values():
        out.append(f"{m.name}  {m.title}  ({len(m.class_names)} classes)")
        if home is not None:
            out.append(f"  folder: {dataset_root(m, home)}")
        for d in m.domains:
            exp = d.expected_count if d.expected_count is not None else "?"
            state = ""
            if home is not None:
                found = find_domain_dir(m, d, home)
                state = f"  present: {found}" if found is not None else "  missing"
            out.append(f"  {d.abbrev:<3} {d.name:<13} expected images: {exp}{state}")
        if m.pairs:
            out.append(
                "  pairs: " + ", ".join(f"{m.domain(q).abbrev}->{m.domain(g).abbrev}" for q, g in m.pairs)
            )
        for a in m.archives:
            ver = "verified" if a.verified else "UNVERIFIED (single source)"
            out.append(f"  archive {a.filename}: {a.url} [{a.checksum}, {ver}]")
        if not m.archives:
            out.append("  archive: none with a known checksum; place by hand")
        out += [f"  layout: {lay}" for lay in m.layouts]
        out += [f"  note: {n}" for n in m.notes]
        out.append("")
    out.append(f"backbones (weights folder {weights_dir()}):")
    for e in BACKBONES:
        out.append(f"  {e.name:<14} {e.obj.out_dim:>5}-d  {e.summary}")
    out.append(f"feature cache: {cache_root(DataOptions())} (override with --cache-dir)")
    sys.stdout.write("\n".join(out) + "\n")
