"""Custom data: ``folder:PATH`` and ``npz:PATH`` (u2cdr_bench/data/custom.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2cdr_bench import backbones as bb
from u2cdr_bench.data import DataOptions, get_dataset
from u2cdr_bench.data.custom import abbreviations
from u2cdr_bench.data.registry import DYNAMIC
from u2cdr_bench.errors import UserError

MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "minisets"
BACKBONE = "test-tiny32"
if BACKBONE not in bb.BACKBONES:
    bb.register_backbone(
        bb.BackboneSpec(
            BACKBONE, "tests only", 64, bb.Preprocess(36, 32), bb.BACKBONES.get("tiny-random").make, None
        )
    )


def _opts(tmp_path: Path, **kw) -> DataOptions:
    return DataOptions(cache_dir=tmp_path / "cache", backbone=BACKBONE, n_views=1, quiet=True, **kw)


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    rng = np.random.default_rng(0)
    for d, classes in layout.items():
        for c, n in classes.items():
            (root / d / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                img = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / d / c / f"{k}.jpg")
    return root


def test_prefix_builders_are_registered() -> None:
    get_dataset("digits")  # loads the built-in modules
    assert {"folder", "npz"} <= set(DYNAMIC)
    with pytest.raises(UserError, match="dataset prefix 'zip'.*folder:PATH.*npz:PATH"):
        get_dataset("zip:/x")


def test_abbreviations_by_hand() -> None:
    assert abbreviations(["art_painting", "cartoon", "photo", "sketch"]) == ["A", "C", "P", "S"]
    assert abbreviations(["photo", "painting", "pencil"]) == ["Ph", "Pa", "Pe"]
    assert abbreviations(["a", "ab"]) == ["A", "Ab"]


def test_folder_with_matching_classes_loads_features_and_finetune_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"day": {"car": 2, "tree": 1}, "night": {"car": 1, "tree": 2}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # identical class names: no warning at all
        spec = get_dataset(f"folder:{root}")
    assert spec.name == f"folder:{root}" and spec.kind == "real" and spec.profile == "features"
    assert spec.domain_names == ["day", "night"] and [d.abbrev for d in spec.domains] == ["D", "N"]
    assert spec.class_names == ("car", "tree") and spec.all_pairs() == [("day", "night"), ("night", "day")]
    day = spec.load("D", _opts(tmp_path))
    assert day.kind == "features" and day.x.shape == (3, 64) and day.labels.tolist() == [0, 0, 1]
    assert day.views.shape == (1, 3, 64) and day.info["skipped_files"] == 0
    assert set(day.extra_views) == {"strong", "fourier", "phase"}
    ft = spec.load("night", _opts(tmp_path, mode="finetune"))
    assert ft.kind == "image" and ft.x.shape == (3, 3, 32, 32) and ft.labels.tolist() == [0, 1, 1]
    assert float(ft.x.min()) >= 0.0 and float(ft.x.max()) <= 1.0


@pytest.mark.dataset
@pytest.mark.skipif(not (MINI / "pacs_mini_10").is_dir(), reason="../shared/data/minisets absent")
def test_folder_pacs_mini(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"matched by exact name; 4 of 7 name\(s\) are missing") as rec:
        spec = get_dataset(f"folder:{MINI / 'pacs_mini_10'}")
    msg = str(rec[0].message)
    assert "giraffe (art_painting, cartoon, sketch)" in msg and "3 shared by all" in msg
    assert spec.domain_names == ["art_painting", "cartoon", "photo", "sketch"]
    assert [d.abbrev for d in spec.domains] == ["A", "C", "P", "S"] and len(spec.all_pairs()) == 12
    assert spec.class_names == ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
    photo = spec.load("P", _opts(tmp_path))
    counts = {c: len(list((MINI / "pacs_mini_10" / "photo" / c).iterdir())) for c in spec.class_names
              if (MINI / "pacs_mini_10" / "photo" / c).is_dir()}  # fmt: skip
    want = [spec.class_names.index(c) for c in sorted(counts) for _ in range(counts[c])]
    assert photo.labels.tolist() == want and len(photo) == 10


@pytest.mark.dataset
@pytest.mark.skipif(not (MINI / "vlcs_mini").is_dir(), reason="../shared/data/minisets absent")
def test_folder_vlcs_mini_has_no_shared_class_names() -> None:
    with pytest.warns(UserWarning) as rec:
        spec = get_dataset(f"folder:{MINI / 'vlcs_mini'}")
    msgs = [str(r.message) for r in rec]
    assert any("14 of 14 name(s) are missing from some domain (0 shared by all)" in m for m in msgs)
    assert any("hund (caltech)" in m and "husky (labelme)" in m and "dog (sun)" in m for m in msgs)
    no_share = [m for m in msgs if "share no class name" in m]
    assert len(no_share) == 3  # caltech-labelme, caltech-sun, labelme-sun
    assert len(spec.class_names) == 14 and spec.class_names == tuple(sorted(spec.class_names))
    assert [d.abbrev for d in spec.domains] == ["C", "L", "S"]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist; expected the layout"):
        get_dataset(f"folder:{tmp_path / 'nope'}")
    one = _tree(tmp_path / "one", {"only": {"a": 1}})
    with pytest.raises(UserError, match="need at least 2"):
        get_dataset(f"folder:{one}")


def test_folder_with_a_truncated_jpeg_skips_it(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"x": {"a": 3}, "y": {"a": 2}})
    bad = root / "x" / "a" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:60])
    spec = get_dataset(f"folder:{root}")
    with pytest.warns(RuntimeWarning, match=r"skipped 1 unreadable image file\(s\): x/a/1.jpg"):
        x = spec.load("x", _opts(tmp_path))
    assert len(x) == 2 and x.info["skipped_files"] == 1 and x.info["skipped"] == ["x/a/1.jpg"]
    assert x.views.shape == (1, 2, 64) and x.extra_views["strong"].shape == (1, 2, 64)
    with pytest.warns(RuntimeWarning, match="skipped 1"):
        ft = spec.load("x", _opts(tmp_path, mode="finetune"))
    assert ft.x.shape[0] == 2 and ft.info["skipped_files"] == 1


# --------------------------------------------------------------------------------------------------- npz
def _npz(path: Path, **extra) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(
        class_names=np.array(["ant", "bee", "cow"]),
        features_zeta=rng.normal(size=(5, 4)).astype(np.float32),
        labels_zeta=np.array([0, 1, 2, 2, 0]),
        features_alpha=rng.normal(size=(3, 4)),
        labels_alpha=np.array([1, 1, 0]),
    )
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def test_npz_spec_and_loader_return_the_file_arrays(tmp_path: Path) -> None:
    views = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    path = _npz(tmp_path / "f.npz", views_alpha=views)
    spec = get_dataset(f"npz:{path}")
    assert spec.kind == "features" and spec.input_kind == "features" and spec.profile == "features"
    assert spec.domain_names == ["zeta", "alpha"]  # the file's order
    assert spec.class_names == ("ant", "bee", "cow") and spec.all_pairs() == [
        ("zeta", "alpha"),
        ("alpha", "zeta"),
    ]
    with np.load(path) as z:
        zeta = spec.load("zeta", DataOptions(mode="finetune"))  # the mode does not matter for features
        assert zeta.x.dtype == torch.float32 and np.array_equal(zeta.x.numpy(), z["features_zeta"])
        assert zeta.labels.tolist() == [0, 1, 2, 2, 0] and zeta.views is None
        alpha = spec.load("A", DataOptions())
        np.testing.assert_allclose(alpha.x.numpy(), z["features_alpha"].astype(np.float32))
        np.testing.assert_array_equal(alpha.views.numpy(), views)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (dict(labels_zeta=np.array([0, 1, 2, 3, 0])), "must index class_names"),
        (dict(labels_zeta=np.array([0, 1])), "must be 5 integers"),
        (dict(features_alpha=np.zeros((3, 5))), "dimension 5"),
        (dict(features_beta=np.zeros((2, 4))), "no matching labels_beta"),
        (dict(class_names=np.array(["ant", "bee", "ant"])), "duplicates"),
        (dict(features_zeta=np.full((5, 4), np.nan)), "NaN"),
        (dict(views_alpha=np.zeros((2, 4, 4))), "views_alpha must be"),
    ],
)
def test_npz_errors(tmp_path: Path, extra: dict, match: str) -> None:
    path = _npz(tmp_path / "bad.npz", **extra)
    with pytest.raises(UserError, match=match):
        get_dataset(f"npz:{path}")


def test_npz_file_problems(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        get_dataset(f"npz:{tmp_path / 'none.npz'}")
    obj = tmp_path / "obj.npz"
    np.savez(obj, class_names=np.array(["a", 1], dtype=object), features_x=np.zeros((1, 2)))
    with pytest.raises(UserError, match="without pickle"):
        get_dataset(f"npz:{obj}")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        get_dataset(f"npz:{junk}")
    one = tmp_path / "one.npz"
    np.savez(one, class_names=np.array(["a"]), features_x=np.zeros((1, 2)), labels_x=np.array([0]))
    with pytest.raises(UserError, match="at least 2 domains"):
        get_dataset(f"npz:{one}")
