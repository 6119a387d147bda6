"""``plot embedding``: a 2-D map of the query and gallery embeddings of one or more runs (paper Figs. 2–3).

Per record, at most ``max_points`` queries and ``max_points`` gallery items are drawn (a seeded random subset;
records of the same task use the same samples, matched by sample id, so panels compare the same points) and
projected together to 2-D by

* ``tsne``: :class:`sklearn.manifold.TSNE` (perplexity ``min(30, (n - 1) / 3)``, PCA initialisation, the
  given seed), Euclidean, as the benchmark's retrieval distance;
* ``umap``: ``umap.UMAP`` when the ``umap-learn`` package is installed (``auto`` picks it then, else t-SNE);
* ``pca``: the first two principal components (:class:`sklearn.decomposition.PCA`), fast and linear.

Colour = class (the same colour for a class in every panel), marker = domain (``o`` query, ``^`` gallery);
points of classes that exist in one domain only (query-private in open-set, gallery-private in partial) get a
black outline. With several records the panels stand side by side, e.g. ``pretrained`` before and ``uem``
after training on the same task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..artifacts import SavedEmbeddings
from ..errors import UserError
from .common import class_colours, new_figure, shorten, task_title

PROJECTIONS = ("auto", "tsne", "umap", "pca")


def _umap_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def resolve_projection(name: str) -> str:
    """The projection actually used for ``name``; UserError for an unknown or unavailable one."""
    if name not in PROJECTIONS:
        raise UserError(f"Unknown projection '{name}'; valid choices: {', '.join(PROJECTIONS)}.")
    if name == "auto":
        return "umap" if _umap_available() else "tsne"
    if name == "umap" and not _umap_available():
        raise UserError(
            "Projection 'umap' needs the umap-learn package (pip install umap-learn); or use tsne."
        )
    return name


def project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """``[N, 2]`` projection of ``x`` ``[N, D]`` by ``method`` (``tsne``, ``umap`` or ``pca``)."""
    x = np.asarray(x, dtype=np.float32)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def _subset(n: int, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def plot_embedding(
    records: Sequence[SavedEmbeddings],
    projection: str = "auto",
    max_points: int = 1000,
    seed: int = 0,
) -> tuple[Figure, dict]:
    """The figure (one panel per record) and ``{"projection": ..., "points": [n per panel], ...}``."""
    if not records:
        raise UserError("plot embedding needs at least one record.")
    if max_points < 2:
        raise UserError(f"--max-points must be at least 2, got {max_points}.")
    names = records[0].class_names
    for s in records[1:]:
        if s.class_names != names:
            raise UserError(
                f"Records {records[0].path.stem} and {s.path.stem} have different class lists; "
                "compare records of the same dataset."
            )
    method = resolve_projection(projection)
    rng = np.random.default_rng(seed)
    first = records[0]
    q_sel = _subset(len(first.query), max_points, rng)
    g_sel = _subset(len(first.gallery), max_points, rng)
    q_ids, g_ids = first.query_ids[q_sel], first.gallery_ids[g_sel]
    colours = class_colours(len(names))
    n = len(records)
    fig = new_figure(4.6 * n + 0.4, 5.4)
    common = task_title(first.record, with_method=False)
    same_task = all(task_title(s.record, with_method=False) == common for s in records)
    fig.suptitle(
        f"Embeddings ({'t-SNE' if method == 'tsne' else method.upper()}) · "
        + (common if same_task else first.record["config"]["dataset"]),
        fontsize=11,
    )
    shown: set[int] = set()
    info: dict = {"projection": method, "points": [], "classes": []}
    for i, s in enumerate(records):
        qs, gs = _matching(s.query_ids, q_ids, q_sel), _matching(s.gallery_ids, g_ids, g_sel)
        xy = project(np.concatenate([s.query[qs], s.gallery[gs]]), method, seed)
        yq, yg = s.query_labels[qs], s.gallery_labels[gs]
        only = set(np.setxor1d(np.unique(s.query_labels), np.unique(s.gallery_labels)).tolist())
        ax = fig.add_subplot(1, n, i + 1)
        for part, (lab, pts, marker) in enumerate(((yq, xy[: len(qs)], "o"), (yg, xy[len(qs) :], "^"))):
            for c in np.unique(lab):
                m = lab == c
                private = int(c) in only
                ax.scatter(
                    pts[m, 0],
                    pts[m, 1],
                    s=14 if part == 0 else 18,
                    marker=marker,
                    color=colours[int(c)],
                    edgecolors="black" if private else "none",
                    linewidths=0.6 if private else 0.0,
                    alpha=0.75,
                )
                shown.add(int(c))
        title = s.record["config"]["method"]
        if not same_task:
            title += "\n" + task_title(s.record, with_method=False)
        m_all = s.record["metrics"].get("map_all")
        if m_all is not None:
            title += f" (mAP@All {m_all:.1f})"
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        info["points"].append(len(qs) + len(gs))
    handles = [
        Line2D([], [], marker="s", linestyle="", color=colours[c], markersize=8, label=shorten(names[c], 16))
        for c in sorted(shown)
    ]
    q_dom, g_dom = first.meta.get("query_domain", "query"), first.meta.get("gallery_domain", "gallery")
    handles += [
        Line2D([], [], marker="o", linestyle="", color="#555555", label=f"query ({q_dom})"),
        Line2D([], [], marker="^", linestyle="", color="#555555", label=f"gallery ({g_dom})"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="black",
            label="outlined: class in one domain only",
        ),
    ]
    ncol = -(-len(handles) // 2) if n > 1 else -(-len(handles) // 3)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    info["classes"] = sorted(shown)
    return fig, info


def _matching(ids: np.ndarray, wanted: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of ``ids`` holding ``wanted`` (same samples across records), else ``fallback`` rows."""
    pos = {str(v): i for i, v in enumerate(ids)}
    rows = [pos.get(str(w)) for w in wanted]
    if all(r is not None for r in rows):
        return np.asarray(rows, dtype=np.int64)
    return fallback[fallback < len(ids)]


__all__ = ["PROJECTIONS", "plot_embedding", "project", "resolve_projection"]
