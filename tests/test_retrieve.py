"""``u2cdr-bench retrieve``: image folders generated from the embedded digits (and PACS images when present)
searched with a saved model; rankings against a naive reference, the carried detector, the gallery cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2cdr_bench.artifacts import MODEL_FORMAT, embed_inputs, load_embeddings, load_model, rebuild_encoder
from u2cdr_bench.carried_detector import DetectorState
from u2cdr_bench.cli import main
from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.retrieve import plot_retrieve, retrieve

PACS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pacs"


def _save_png(x: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(x * 255).astype(np.uint8), "L").save(path)


@pytest.fixture(scope="module")
def folders(saved_runs, tmp_path_factory):
    """A gallery of 120 optdigits images of the run's gallery classes in class folders; 4 query images."""
    root = tmp_path_factory.mktemp("retrieve")
    saved = load_embeddings(saved_runs.trained)
    spec = get_dataset("digits")
    od, mn = spec.load("optdigits", DataOptions()), spec.load("mnist", DataOptions())
    rows = [int(str(i).rsplit("/", 1)[1]) for i in saved.gallery_ids[::7][:120]]
    for r in rows:
        _save_png(od.x[r, 0].numpy(), root / "gallery" / od.class_names[od.labels[r]] / f"od{r:04d}.png")
    queries = []
    for cls in ("0", "4", "3"):  # 0 and 4 are gallery classes, 3 is query-private
        r = int(np.flatnonzero(mn.labels == int(cls))[5])
        queries.append(root / "queries" / cls / f"mn{r:04d}.png")
        _save_png(mn.x[r, 0].numpy(), queries[-1])
    first = sorted((root / "gallery").rglob("*.png"))[0]
    queries.append(root / "queries" / "copy.png")
    shutil.copy(first, queries[-1])  # an image that is also in the gallery
    return root / "gallery", queries, root


def _pixels(paths: list[Path]) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255.0)[None] for p in paths]
    )


def test_retrieve_ranks_like_a_naive_search_and_flags_with_the_carried_detector(
    saved_runs, folders, tmp_path
):
    gallery, queries, _ = folders
    model_path = saved_runs.trained.parent / f"{saved_runs.trained.stem}.model.pt"
    res = retrieve(model_path, gallery, queries, top=6, cache_dir=tmp_path, quiet=True)
    model = load_model(model_path)
    module = rebuild_encoder(model)
    g_paths = sorted(gallery.rglob("*.png"), key=lambda p: p.relative_to(gallery).as_posix())
    g = embed_inputs(model, module, _pixels(g_paths)).astype(np.float64)
    q = embed_inputs(model, module, _pixels(queries)).astype(np.float64)
    assert res["gallery_size"] == 120 and res["detector"] == "generic"
    for i, item in enumerate(res["queries"]):
        d = np.linalg.norm(g - q[i], axis=1)
        order = np.argsort(d, kind="stable")[:6]
        assert [r["path"] for r in item["results"]] == [
            g_paths[j].relative_to(gallery).as_posix() for j in order
        ]
        assert [r["distance"] for r in item["results"]] == pytest.approx(d[order], abs=1e-5)
        assert all(r["class"] == Path(r["path"]).parent.name for r in item["results"])
    assert [it["query_class"] for it in res["queries"]] == ["0", "4", None, None]  # "3" is no gallery class
    copy = res["queries"][3]["results"][0]
    assert copy["path"] == g_paths[0].relative_to(gallery).as_posix() and copy["distance"] < 1e-5
    flags = DetectorState.from_dict(model["detector"]).flags(q.astype(np.float32), g.astype(np.float32))
    assert [it["private"] for it in res["queries"]] == flags.tolist()
    # the pixel pipeline reproduces the run's embedding of a digit up to 8-bit rounding of the PNG
    saved = load_embeddings(saved_runs.trained)
    row = int(g_paths[0].stem[2:])
    (k,) = np.flatnonzero(saved.gallery_ids == f"optdigits/{row}")
    assert np.abs(g[0] - saved.gallery[k]).max() < 0.05


def test_gallery_embedding_is_cached_and_refreshed_when_the_folder_changes(
    saved_runs, folders, tmp_path, capsys
):
    gallery, queries, root = folders
    own = tmp_path / "gallery"
    shutil.copytree(gallery, own)
    args = ["retrieve", "--model", str(saved_runs.trained), "--gallery", str(own), "--query", str(queries[0])]
    args += [str(q) for q in queries[1:]] + ["--top", "3", "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(args) == 0
    cap = capsys.readouterr()
    first = json.loads(cap.out)
    assert "written to" in cap.err and Path(first["gallery_cache"]).is_file()
    assert len(first["queries"]) == 4 and all(len(q["results"]) == 3 for q in first["queries"])
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "read from" in cap.err and json.loads(cap.out) == first
    shutil.copy(queries[0], own / "0" / "extra.png")
    assert main(args) == 0
    cap = capsys.readouterr()
    again = json.loads(cap.out)
    assert "written to" in cap.err and again["gallery_size"] == 121
    assert again["gallery_cache"] != first["gallery_cache"]


def test_retrieve_plot(saved_runs, folders, tmp_path, capsys):
    gallery, queries, _ = folders
    out = tmp_path / "r.png"
    args = [
        "retrieve",
        "--model",
        str(saved_runs.trained),
        "--gallery",
        str(gallery),
        "--query",
        str(queries[0]),
    ]
    args += ["--query", str(queries[2]), "--top", "4", "--plot", "-o", str(out), "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith(str(queries[0])) and "  1. " in text
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (655, 380)  # (1.25 · 5 + 0.3) × (1.45 · 2 + 0.9) in
    res = retrieve(
        saved_runs.trained, gallery, [queries[0], queries[2]], top=4, cache_dir=tmp_path, quiet=True
    )
    fig = plot_retrieve(res)
    assert len(fig.axes) == 2 * 5
    frames = [fig.axes[1 + j].spines["top"].get_edgecolor() for j in range(4)]
    hits = [r["class"] == "0" for r in res["queries"][0]["results"]]
    from matplotlib.colors import to_rgba

    from u2cdr_bench.plots.common import CORRECT, NEUTRAL, WRONG

    assert frames == [to_rgba(CORRECT if h else WRONG) for h in hits]
    assert fig.axes[6].spines["top"].get_edgecolor() == to_rgba(NEUTRAL)  # "3" is no gallery class


@pytest.mark.dataset
@pytest.mark.skipif(not PACS.is_dir(), reason="PACS not under ../shared/data")
def test_retrieve_on_pacs_images_with_backbone_features(tmp_path):
    from u2cdr_bench.features import ImageSet, View, extract_views

    gallery = tmp_path / "gallery"
    for cls in ("dog", "horse"):
        for p in sorted((PACS / "sketch" / cls).iterdir())[:5]:
            (gallery / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, gallery / cls / p.name)
    query = sorted((PACS / "photo" / "dog").iterdir())[0]
    same = sorted((gallery / "horse").iterdir())[2]
    # a features-pipeline model whose head is the identity: the embedding is the backbone's clean feature
    model = {
        "format": MODEL_FORMAT,
        "config": {
            "method": "pretrained",
            "dataset": "pacs",
            "setting": "close-set",
            "query": "photo",
            "gallery": "sketch",
            "seed": 0,
        },  # fmt: skip
        "config_hash": "0" * 16,
        "pipeline": "features",
        "input_kind": "features",
        "input_shape": [1280],
        "backbone": "effnet-lite0",
        "encoder": {"type": "identity", "normalize": False, "state_dict": {}},
        "detector": None,
        "query_classes": [],
        "gallery_classes": [],
    }
    torch.save(model, tmp_path / "m.model.pt")
    res = retrieve(
        tmp_path / "m.model.pt", gallery, [query, same], top=10, cache_dir=tmp_path / "c", quiet=True
    )
    assert res["gallery_size"] == 10 and res["detector"] is None
    assert res["queries"][1]["results"][0]["path"] == f"horse/{same.name}"
    assert res["queries"][1]["results"][0]["distance"] < 1e-3
    files = sorted(gallery.rglob("*.*"), key=lambda p: p.relative_to(gallery).as_posix())
    ref = extract_views(
        ImageSet("t", "t", tuple(files), tuple(p.name for p in files), np.zeros(len(files), dtype=np.int64)),
        "effnet-lite0", [View("clean")], tmp_path / "ref", quiet=True,
    )["clean"].features  # fmt: skip
    d = np.linalg.norm(ref - ref[files.index(same)], axis=1)
    assert [r["distance"] for r in res["queries"][1]["results"]] == pytest.approx(np.sort(d), abs=1e-3)
