"""The ``u2cdr-bench plot`` commands (typer): ``retrievals``, ``embedding`` and ``results``.

    u2cdr-bench plot retrievals runs/<hash>.json [--top 8] [--queries 6] [-o retrievals.png]
    u2cdr-bench plot embedding runs/<hash1>.json [runs/<hash2>.json ...] [--projection auto] [-o map.pdf]
    u2cdr-bench plot results --runs results/pacs [--metric map_all] [-o results.png]

``retrievals`` and ``embedding`` read the embeddings saved by ``run --save-embeddings``; ``results`` reads
records only. PNG by default; the suffix of ``-o`` picks the format (``.png``, ``.pdf``, ``.svg``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError

plot_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Draw retrievals, embedding maps and result charts."
)

Output = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="Image file (.png, .pdf or .svg).")
]


def _wrote(path: Path, quiet: bool = False) -> None:
    if not quiet:
        print(f"wrote {path}", file=sys.stderr)


@plot_app.command("retrievals")
def retrievals(
    record: Annotated[
        Path, typer.Argument(metavar="RECORD", help="A run record (runs/<hash>.json) with saved embeddings.")
    ],
    top: Annotated[int, typer.Option(metavar="N", help="Gallery items shown per query.")] = 8,
    queries: Annotated[int, typer.Option(metavar="N", help="Number of query rows.")] = 6,
    seed: Annotated[int, typer.Option(metavar="S", help="Seed of the query choice.")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Data home, for images whose saved path moved.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Cache of the embedded digits.")
    ] = None,
    output: Output = None,
) -> None:
    """Rows of queries with their top-k gallery items, green = same class, red = another (paper Fig. 4)."""
    from ..artifacts import load_embeddings
    from .common import ImageSource, output_path, save_figure
    from .retrievals import plot_retrievals

    saved = load_embeddings(record)
    path = output_path(output, f"retrievals-{saved.record['config_hash']}.png")
    source = ImageSource(saved.record["config"]["dataset"], data_dir=data_dir, cache_dir=cache_dir)
    fig, _ = plot_retrievals(saved, top=top, n_queries=queries, seed=seed, source=source)
    _wrote(save_figure(fig, path))


@plot_app.command("embedding")
def embedding(
    records: Annotated[
        list[Path], typer.Argument(metavar="RECORD...", help="One or more run records with saved embeddings.")
    ],
    projection: Annotated[
        str, typer.Option(metavar="NAME", help="auto (UMAP if installed, else t-SNE), tsne, umap or pca.")
    ] = ("auto"),
    max_points: Annotated[
        int, typer.Option(metavar="N", help="At most this many queries and gallery items per panel.")
    ] = (1000),
    seed: Annotated[int, typer.Option(metavar="S", help="Seed of the subset and the projection.")] = 0,
    output: Output = None,
) -> None:
    """A 2-D map of query and gallery embeddings: colour = class, marker = domain; records side by side."""
    from ..artifacts import load_embeddings
    from .common import output_path, save_figure
    from .embedding import plot_embedding, resolve_projection

    resolve_projection(projection)
    saved = [load_embeddings(r) for r in records]
    stem = "-".join(s.record["config_hash"][:8] for s in saved)
    path = output_path(output, f"embedding-{stem}.png")
    fig, _ = plot_embedding(saved, projection=projection, max_points=max_points, seed=seed)
    _wrote(save_figure(fig, path))


@plot_app.command("results")
def results(
    runs: Annotated[Path, typer.Option(metavar="DIR", help="Folder of run records.")] = Path("runs"),
    dataset: Annotated[
        str | None, typer.Option(metavar="NAME", help="Dataset (needed when the records hold several).")
    ] = None,
    metric: Annotated[str, typer.Option(metavar="NAME", help="Metric to plot.")] = "map_all",
    methods: Annotated[
        str | None, typer.Option(metavar="M,...", help="Comma-separated methods to show.")
    ] = None,
    paper: Annotated[bool, typer.Option(help="Mark the paper's numbers where the dataset has them.")] = True,
    output: Output = None,
) -> None:
    """Per setting, each method's average over pairs with the spread over seeds; UEM and the paper marked."""
    from ..metrics import METRICS
    from ..records import load_records
    from .common import output_path, save_figure
    from .results import plot_results

    if metric not in METRICS:
        raise UserError(f"Unknown metric '{metric}'; valid choices: {', '.join(METRICS.names())}.")
    path = output_path(output, f"results-{dataset or runs.name}.png")
    from ..records import RecordError

    try:
        records = load_records(runs)
    except RecordError as e:
        raise UserError(
            f"{str(e).rstrip('.')}; fix or remove it (table --skip-bad leaves such files out)."
        ) from None
    if not records:
        raise UserError(f"No run records in {runs}; run `u2cdr-bench run` first or pass --runs DIR.")
    method_list = [m.strip() for m in methods.split(",")] if methods else None
    fig, _ = plot_results(
        records, dataset=dataset, metric=metric, methods=method_list, paper=paper, source=f"records: {runs}"
    )
    _wrote(save_figure(fig, path))
