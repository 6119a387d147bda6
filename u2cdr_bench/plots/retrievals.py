"""``plot retrievals``: rows of queries with their top-k gallery items (the paper's Fig. 4).

From a record's saved embeddings (``run --save-embeddings``) the gallery is ranked for a few queries by the
Euclidean distance of the benchmark (faiss flat index, :func:`u2cdr_bench.retrieval.knn`, ties to the lower
gallery index). Each row shows the query (blue frame) then its top ``k`` items, framed green when the item's
class is the query's and red otherwise. Under an open-set query the caption says whether its class is
query-private and what the run's detector said ("private · detected", "private · missed", "shared · wrongly
flagged" (a false rejection) or "shared").

Queries are drawn reproducibly (``seed``): one per class in a random class order, shared classes first and, in
open-set, about a third from the private classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ..artifacts import SavedEmbeddings
from ..errors import UserError
from ..retrieval import knn
from .common import CORRECT, NEUTRAL, QUERY, WRONG, ImageSource, draw_tile, new_figure, shorten, task_title


@dataclass(frozen=True)
class Tile:
    """One tile: the image (``None``: show ``label``), the class label, the caption and the frame colour."""

    image: np.ndarray | None
    label: str
    caption: str
    frame: str


@dataclass(frozen=True)
class GridRow:
    query: Tile
    results: list[Tile]


def draw_grid(rows: Sequence[GridRow], title: str, note: str) -> Figure:
    """A figure of ``len(rows)`` rows × (1 + k) tiles; ``note`` goes under the title."""
    if not rows:
        raise UserError("Nothing to draw: no query rows.")
    k = max(len(r.results) for r in rows)
    width, height = 1.25 * (k + 1) + 0.3, 1.45 * len(rows) + 0.9
    fig = new_figure(width, height)
    fig.suptitle(f"{title}\n{note}", fontsize=10)
    grid = fig.add_gridspec(len(rows), k + 1)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(grid[i, 0])
        draw_tile(ax, row.query.image, row.query.label, row.query.frame, row.query.caption)
        if i == 0:
            ax.set_title("query", fontsize=8)
        for j in range(k):
            ax = fig.add_subplot(grid[i, j + 1])
            if j < len(row.results):
                t = row.results[j]
                draw_tile(ax, t.image, t.label, t.frame, t.caption)
            else:
                ax.set_axis_off()
            if i == 0:
                ax.set_title(f"#{j + 1}", fontsize=8)
    return fig


def pick_queries(labels: np.ndarray, private: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` query indices: one per class in a seeded random order (cycling), shared first, ~n/3 private."""
    rng = np.random.default_rng(seed)
    n = min(int(n), len(labels))
    n_private = min(int(private.sum()), max(1, n // 3)) if private.any() and (~private).any() else 0
    if not (~private).any():
        n_private = n
    picks: list[int] = []
    for mask, count in ((~private, n - n_private), (private, n_private)):
        pool = np.flatnonzero(mask)
        if count <= 0 or len(pool) == 0:
            continue
        classes = rng.permutation(np.unique(labels[pool]))
        left = {int(c): list(rng.permutation(pool[labels[pool] == c])) for c in classes}
        chosen: list[int] = []
        while len(chosen) < count and any(left.values()):
            for c in classes:
                if left[int(c)] and len(chosen) < count:
                    chosen.append(int(left[int(c)].pop()))
        picks += chosen
    return np.asarray(picks, dtype=np.int64)


def _status(is_private: bool, flagged: bool | None) -> str:
    if flagged is None:
        return "private class" if is_private else ""
    if is_private:
        return "private · detected" if flagged else "private · missed"
    return "shared · wrongly flagged" if flagged else "shared"


def plot_retrievals(
    saved: SavedEmbeddings,
    top: int = 8,
    n_queries: int = 6,
    seed: int = 0,
    source: ImageSource | None = None,
    queries: Sequence[int] | None = None,
) -> tuple[Figure, dict]:
    """The figure and what it shows: ``{"queries": [...], "neighbours": [[...]], "correct": [[...]]}``."""
    if top < 1 or top > len(saved.gallery):
        raise UserError(f"--top must be between 1 and the gallery size {len(saved.gallery)}, got {top}.")
    if n_queries < 1:
        raise UserError(f"--queries must be at least 1, got {n_queries}.")
    rec = saved.record
    source = source or ImageSource(rec["config"]["dataset"])
    if queries is None:
        sel = pick_queries(saved.query_labels, saved.query_private, n_queries, seed)
    else:
        sel = np.asarray(list(queries), dtype=np.int64)
        bad = [int(i) for i in sel if not 0 <= i < len(saved.query)]
        if bad:
            raise UserError(f"Query index {bad[0]} is out of range 0..{len(saved.query) - 1}.")
    _, nn = knn(saved.query[sel], saved.gallery, top)
    names = saved.class_names
    files_q = saved.query_files
    files_g = saved.gallery_files
    rows, correct = [], []
    for r, qi in enumerate(sel):
        ql = int(saved.query_labels[qi])
        flagged = None if saved.private_pred is None else bool(saved.private_pred[qi])
        status = _status(bool(saved.query_private[qi]), flagged)
        caption = shorten(names[ql]) + (f"\n{status}" if status else "")
        q_img = source.image(str(saved.query_ids[qi]), None if files_q is None else str(files_q[qi]))
        results, hits = [], []
        for gi in nn[r]:
            gl = int(saved.gallery_labels[gi])
            hit = gl == ql
            hits.append(hit)
            g_img = source.image(str(saved.gallery_ids[gi]), None if files_g is None else str(files_g[gi]))
            results.append(Tile(g_img, names[gl], shorten(names[gl]), CORRECT if hit else WRONG))
        rows.append(GridRow(Tile(q_img, names[ql], caption, QUERY), results))
        correct.append(hits)
    map_all = rec["metrics"].get("map_all")
    title = f"Top-{top} retrievals · {task_title(rec)}"
    if map_all is not None:
        title += f" · mAP@All {map_all:.1f}"
    note = "green frame: same class as the query · red: another class"
    if saved.private_pred is not None:
        note += " · private = the query's class is not in the gallery"
    fig = draw_grid(rows, title, note)
    return fig, {"queries": sel.tolist(), "neighbours": nn.tolist(), "correct": correct}


__all__ = ["GridRow", "Tile", "draw_grid", "pick_queries", "plot_retrievals", "NEUTRAL"]
