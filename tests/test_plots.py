"""``u2cdr-bench plot``: each figure rendered from fixture records and saved embeddings, read back as an image
of the expected size, with the expected panels and the plotted values checked against naive references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from u2cdr_bench.artifacts import load_embeddings
from u2cdr_bench.cli import main
from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.plots.common import CORRECT, QUERY, WRONG, class_colours
from u2cdr_bench.plots.embedding import plot_embedding
from u2cdr_bench.plots.results import plot_results
from u2cdr_bench.plots.retrievals import pick_queries, plot_retrievals
from u2cdr_bench.records import build_record, load_records, write_record
from u2cdr_bench.tables import load_paper_results

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def _rows(ids: np.ndarray) -> np.ndarray:
    return np.asarray([int(str(i).rsplit("/", 1)[1]) for i in ids])


# ------------------------------------------------------------------------------------------- retrievals
def test_pick_queries_one_per_class_and_a_third_private():
    labels = np.repeat(np.arange(6), 20)
    private = labels >= 4
    sel = pick_queries(labels, private, n=6, seed=0)
    assert len(sel) == 6 and len(set(sel.tolist())) == 6
    assert private[sel].sum() == 2  # max(1, 6 // 3)
    assert sorted(labels[sel[:4]].tolist()) == [0, 1, 2, 3]  # shared first, one per class
    assert np.array_equal(sel, pick_queries(labels, private, n=6, seed=0))  # reproducible
    none_private = pick_queries(labels, np.zeros_like(private), n=5, seed=1)
    assert len(set(labels[none_private].tolist())) == 5  # close-set: five classes


def test_retrievals_grid_ranks_frames_and_images(saved_runs, tmp_path):
    saved = load_embeddings(saved_runs.trained)
    fig, info = plot_retrievals(saved, top=5, n_queries=4, seed=1)
    assert len(fig.axes) == 4 * (1 + 5)
    mnist = get_dataset("digits").load("mnist", DataOptions()).x.numpy()
    optdigits = get_dataset("digits").load("optdigits", DataOptions()).x.numpy()
    for r, qi in enumerate(info["queries"]):
        # naive ranking: full Euclidean distances, stable sort (ties to the lower gallery index)
        d = np.linalg.norm(saved.gallery.astype(np.float64) - saved.query[qi].astype(np.float64), axis=1)
        assert info["neighbours"][r] == np.argsort(d, kind="stable")[:5].tolist()
        q_ax = fig.axes[r * 6]
        assert to_rgba(q_ax.spines["left"].get_edgecolor()) == to_rgba(QUERY)
        assert np.array_equal(q_ax.images[0].get_array(), mnist[_rows(saved.query_ids[[qi]])[0], 0])
        for j, gi in enumerate(info["neighbours"][r]):
            ax = fig.axes[r * 6 + 1 + j]
            hit = saved.gallery_labels[gi] == saved.query_labels[qi]
            assert info["correct"][r][j] == hit
            assert to_rgba(ax.spines["top"].get_edgecolor()) == to_rgba(CORRECT if hit else WRONG)
            assert np.array_equal(ax.images[0].get_array(), optdigits[_rows(saved.gallery_ids[[gi]])[0], 0])
    captions = [fig.axes[r * 6].get_xlabel() for r in range(4)]
    assert sum("private ·" in c for c in captions) == 1 and all("·" in c or "shared" in c for c in captions)
    assert "digits · open-set · MN→OD · source-only · seed 2024" in fig._suptitle.get_text()

    out = tmp_path / "ret.png"
    args = ["plot", "retrievals", str(saved_runs.trained), "--top", "5", "--queries", "4", "-o", str(out)]
    assert main(args) == 0
    assert _png(out) == (780, 670)  # (1.25 · 6 + 0.3) in × (1.45 · 4 + 0.9) in at 100 dpi


def test_retrievals_of_a_feature_dataset_show_class_names(tmp_path):
    rng = np.random.default_rng(0)
    data = {"class_names": np.array(["cat", "dog", "owl"])}
    for dom, shift in (("X", 0.0), ("Y", 0.5)):
        labels = np.arange(60) % 3
        data[f"features_{dom}"] = (np.eye(3)[labels] * 4 + shift + rng.normal(0, 1, (60, 3))).astype(
            np.float32
        )
        data[f"labels_{dom}"] = labels
    np.savez(tmp_path / "toy.npz", **data)
    runs = tmp_path / "runs"
    args = [
        "run",
        "--method",
        "pretrained",
        "--dataset",
        f"npz:{tmp_path / 'toy.npz'}",
        "--protocol",
        "close-set",
    ]
    assert main([*args, "--pairs", "X:Y", "--out", str(runs), "--quiet", "--save-embeddings"]) == 0
    (record,) = runs.glob("*.json")
    fig, info = plot_retrievals(load_embeddings(record), top=3, n_queries=3, seed=0)
    assert len(fig.axes) == 3 * 4
    assert all(not ax.images for ax in fig.axes)  # no images: class-name tiles
    names = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert names <= {"cat", "dog", "owl"} and len(names) >= 2


# ------------------------------------------------------------------------------------------- embedding
def test_embedding_panels_share_points_colours_and_outlines(saved_runs, tmp_path):
    a, b = load_embeddings(saved_runs.pretrained), load_embeddings(saved_runs.trained)
    fig, info = plot_embedding([a, b], projection="pca", max_points=300, seed=0)
    assert len(fig.axes) == 2 and info["projection"] == "pca" and info["points"] == [600, 600]
    colours = class_colours(10)
    private = set(np.setdiff1d(np.unique(a.query_labels), np.unique(a.gallery_labels)).tolist())
    assert private == {2, 3, 6, 7, 9}
    for ax in fig.axes:
        assert sum(len(c.get_offsets()) for c in ax.collections) == 600
        for coll in ax.collections:
            face = tuple(coll.get_facecolor()[0][:3])
            (cls,) = [c for c in range(10) if np.allclose(colours[c][:3], face)]
            edge = coll.get_edgecolor()
            outlined = len(edge) > 0 and np.allclose(edge[0][:3], 0.0)
            assert outlined == (cls in private)
    assert "pretrained" in fig.axes[0].get_title() and "source-only" in fig.axes[1].get_title()
    assert "digits · open-set · MN→OD · seed 2024" in fig._suptitle.get_text()

    out = tmp_path / "emb.png"
    args = ["plot", "embedding", str(saved_runs.trained), "--projection", "tsne", "--max-points", "60"]
    assert main([*args, "-o", str(out)]) == 0
    assert _png(out) == (500, 540)  # (4.6 · 1 + 0.4) in × 5.4 in at 100 dpi
    pdf = tmp_path / "emb.pdf"
    assert main([*args, "--projection", "pca", "-o", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"


# ------------------------------------------------------------------------------------------- results
def _paper_avg(setting: str, method: str, pairs: list[str]) -> float:
    rows = load_paper_results()["tables"]["office31"][setting]["rows"][method]
    vals = [rows[p]["map"][0] if setting == "open-set" else rows[p][0] for p in pairs]
    return sum(vals) / len(vals)


def test_results_bars_error_bars_and_paper_marks(tmp_path):
    records = load_records(FIXTURES)
    fig, info = plot_results(records, dataset="office31")
    assert info["settings"] == ["close-set", "open-set"] and len(fig.axes) == 2
    # by hand from the fixture values (tests/test_tables.py): per-seed averages over A→D and D→W
    assert info["bars"]["close-set"]["uem [epochs_scale=1.0]"] == pytest.approx((76.5, 2.0))  # 74.5, 78.5
    assert info["bars"]["open-set"]["uem"] == pytest.approx((79.0, 1.5))  # 77.5, 80.5
    assert info["bars"]["open-set"]["pretrained"][0] == pytest.approx(75.0)  # (60+64)/2 and 88
    assert info["bars"]["open-set"]["pretrained"][1] is None  # one seed has both pairs
    assert "pretrained" not in info["bars"]["close-set"]  # D→W missing: no Avg
    paper_uem = _paper_avg("open-set", "UEM", ["A→D", "D→W"])
    assert info["paper"]["open-set"]["uem"] == pytest.approx(paper_uem)
    assert info["paper"]["open-set"]["CDS"] == pytest.approx(_paper_avg("open-set", "CDS", ["A→D", "D→W"]))

    ax = fig.axes[1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    y = ax.get_yticks()[labels.index("uem")]
    (bar,) = [p for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - y) < 1e-9]
    assert bar.get_width() == pytest.approx(79.0)
    (errbar,) = [c.errorbar for c in ax.containers if getattr(c, "errorbar", None) is not None]
    (segment,) = errbar.lines[2][0].get_segments()
    assert segment[:, 0] == pytest.approx([77.5, 80.5])
    marks = [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in ax.lines if ln.get_marker() == "D"]
    assert (pytest.approx(paper_uem), y) in [(x, yy) for x, yy in marks]
    assert "office31" in fig._suptitle.get_text() and "2024, 2025" in fig._suptitle.get_text()

    out = tmp_path / "res.png"
    assert main(["plot", "results", "--runs", str(FIXTURES), "--dataset", "office31", "-o", str(out)]) == 0
    n_rows = 9  # close-set: 2 uem rows + 7 paper-only rows; open-set: 2 runs + 7 paper-only rows
    assert _png(out) == (int(100 * (4.4 * 2 + 1.2)), int(round(100 * (0.32 * n_rows + 1.9))))


def test_results_with_three_seeds_and_no_paper_table(tmp_path):
    runs = tmp_path / "runs"
    values = {2024: (40.0, 50.0), 2025: (44.0, 52.0), 2026: (36.0, 60.0)}  # (MN→OD, OD→MN) per seed
    for method, offset in (("uem", 0.0), ("pretrained", -10.0)):
        for seed, pair_values in values.items():
            for (q, g, label), v in zip((("mnist", "optdigits", "MN→OD"), ("optdigits", "mnist", "OD→MN")),
                                        pair_values, strict=True):  # fmt: skip
                cfg = {"method": method, "dataset": "digits", "setting": "partial", "query": q, "gallery": g,
                       "seed": seed}  # fmt: skip
                rec = build_record(
                    cfg, task={"query_abbrev": label[:2], "gallery_abbrev": label[-2:], "pair": label},
                    protocol={}, metrics={"map_all": v + offset}, counts={}, timings={},
                )  # fmt: skip
                write_record(rec, runs)
    fig, info = plot_results(load_records(runs))
    per_seed = np.array([np.mean(v) for v in values.values()])  # 45, 48, 48
    mean, std = info["bars"]["partial"]["uem"]
    assert mean == pytest.approx(per_seed.mean()) and std == pytest.approx(per_seed.std(ddof=0))
    assert info["bars"]["partial"]["pretrained"] == pytest.approx((per_seed.mean() - 10, per_seed.std()))
    assert info["paper"] == {"partial": {}} and len(fig.axes) == 1
    assert "the paper reports no digits numbers" in fig._suptitle.get_text()
    assert "seeds 2024, 2025, 2026" in fig._suptitle.get_text()


def test_results_needs_a_dataset_when_several(capsys):
    assert main(["plot", "results", "--runs", str(FIXTURES)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The records hold several datasets (digits, office31)")


def test_written_record_is_json(saved_runs):
    # the artifacts block is plain JSON next to the record's other blocks
    rec = json.loads(saved_runs.trained.read_text())
    assert set(rec["artifacts"]) == {"embeddings", "model"}
