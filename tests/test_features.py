"""Feature extraction and its cache (u2cdr_bench/features.py) and the real-image augmentations (images.py).

Uses tiny generated JPEGs and the seeded random ``tiny-random`` backbone, so it runs in a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from u2cdr_bench import backbones as bb
from u2cdr_bench import features as feat
from u2cdr_bench.backbones import load_backbone
from u2cdr_bench.blocks.fourier import phase_only_image
from u2cdr_bench.data.images import MOCO_V2_AUG, ImageAugment, open_rgb, pil_to_tensor, resize_center_crop
from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.features import ImageSet, View, extract_views

BACKBONE = "test-tiny32"
"""``tiny-random`` at 32 x 32 pixels (resize 36, crop 32): a real backbone's code paths, in milliseconds."""
if BACKBONE not in bb.BACKBONES:
    bb.register_backbone(
        bb.BackboneSpec(
            BACKBONE, "tests only", 64, bb.Preprocess(36, 32), bb.BACKBONES.get("tiny-random").make, None
        )
    )


def _write_images(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (40, 32)) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"c{i % 2}" / f"img_{i:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def _imageset(root: Path, paths: list[Path], domain: str = "dom") -> ImageSet:
    names = tuple(p.relative_to(root).as_posix() for p in paths)
    labels = np.array([int(p.parent.name[1:]) for p in paths], dtype=np.int64)
    return ImageSet("toy", domain, tuple(paths), names, labels)


@pytest.fixture()
def toy(tmp_path: Path) -> ImageSet:
    root = tmp_path / "data"
    return _imageset(root, _write_images(root, 6))


def _reference_clean(files: ImageSet) -> np.ndarray:
    """Naive reference: decode, resize 36 + center crop 32, the unfolded backbone one image at a time."""
    net = load_backbone(BACKBONE)
    out = []
    with torch.no_grad():
        for p in files.paths:
            x = resize_center_crop(open_rgb(p), 36, 32)
            out.append(net(x[None]).numpy()[0])
    return np.stack(out)


def test_clean_view_equals_naive_reference_and_is_cached(toy: ImageSet, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "cache"
    out = extract_views(toy, BACKBONE, [View("clean")], root, batch_size=3, chunk_size=4, quiet=True)
    got = out["clean"].features
    assert got.shape == (6, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference_clean(toy), rtol=1e-4, atol=1e-5)
    assert out["clean"].ok.all()
    meta = json.loads((out["clean"].folder / "meta.json").read_text())
    assert meta["n"] == 6 and meta["dim"] == 64 and meta["backbone"]["backbone"] == BACKBONE
    assert not list(out["clean"].folder.glob("part-*"))

    def boom(*a, **k):
        raise AssertionError("the backbone must not run on a cache hit")

    monkeypatch.setattr(feat, "_inference_model", boom)
    again = extract_views(toy, BACKBONE, [View("clean")], root, quiet=True)
    np.testing.assert_array_equal(again["clean"].features, got)


def test_interrupted_extraction_resumes_from_the_saved_chunks(
    toy: ImageSet, tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "cache"
    views = [View("clean"), View("aug", 0)]
    real_save = feat._save_chunk
    saved: list[int] = []

    def save_then_die(folder, c, feats, ok):
        real_save(folder, c, feats, ok)
        saved.append(c)
        if len(saved) == 1:
            raise KeyboardInterrupt("simulated interruption after one chunk")

    monkeypatch.setattr(feat, "_save_chunk", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        extract_views(toy, BACKBONE, views, root, chunk_size=4, quiet=True)
    parts = sorted(p.name for p in root.rglob("part-*.npz"))
    assert parts == ["part-00000.npz"]  # chunk 0 of the first view only
    saved.clear()
    monkeypatch.setattr(feat, "_save_chunk", lambda *a: (real_save(*a), saved.append(a[1])))
    resumed = extract_views(toy, BACKBONE, views, root, chunk_size=4, quiet=True)
    # 2 chunks x 2 views = 4 in all; one was written before the interruption
    assert len(saved) == 3
    fresh = extract_views(toy, BACKBONE, views, tmp_path / "fresh", chunk_size=4, quiet=True)
    for v in ("clean", "aug0"):
        np.testing.assert_allclose(resumed[v].features, fresh[v].features, rtol=0, atol=0)


def test_augmented_views_do_not_depend_on_chunking_or_on_the_other_views(
    toy: ImageSet, tmp_path: Path
) -> None:
    a = extract_views(
        toy, BACKBONE, [View("aug", 0), View("aug", 1)], tmp_path / "a", chunk_size=3, quiet=True
    )
    b = extract_views(toy, BACKBONE, [View("aug", 1)], tmp_path / "b", chunk_size=7, batch_size=2, quiet=True)
    np.testing.assert_allclose(a["aug1"].features, b["aug1"].features, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a["aug0"].features, a["aug1"].features)


def test_cache_key_changes_with_files_view_and_weights(toy: ImageSet, tmp_path: Path) -> None:
    root = tmp_path / "c"
    d_clean = feat.view_cache_dir(root, toy, BACKBONE, View("clean"))
    assert d_clean != feat.view_cache_dir(root, toy, BACKBONE, View("aug", 0))
    assert feat.view_cache_dir(root, toy, BACKBONE, View("aug", 0)) != feat.view_cache_dir(
        root, toy, BACKBONE, View("aug", 1)
    )
    # same files -> same key; one file rewritten with another size -> another key
    assert d_clean == feat.view_cache_dir(root, toy, BACKBONE, View("clean"))
    Image.new("RGB", (9, 9)).save(toy.paths[0])
    assert d_clean != feat.view_cache_dir(root, toy, BACKBONE, View("clean"))
    # a weights file for the same architecture -> another key
    w = tmp_path / "tiny.pth"
    torch.save(load_backbone(BACKBONE).net.state_dict(), w)
    fp = feat.backbone_fingerprint(f"{BACKBONE}:{w}")
    assert len(fp["weights_sha256"]) == 64
    assert feat.view_cache_dir(root, toy, f"{BACKBONE}:{w}", View("clean")) != d_clean


def test_unreadable_file_gives_a_zero_row_and_ok_false(tmp_path: Path) -> None:
    root = tmp_path / "data"
    paths = _write_images(root, 4)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])  # truncated JPEG
    files = _imageset(root, paths)
    out = extract_views(files, BACKBONE, [View("clean"), View("strong", 0)], tmp_path / "c", quiet=True)
    for v in out.values():
        assert v.ok.tolist() == [True, True, False, True]
        assert np.all(v.features[2] == 0) and np.all(np.abs(v.features[[0, 1, 3]]).sum(1) > 0)


def test_phase_view_is_the_phase_image_of_the_aug_view(toy: ImageSet) -> None:
    pre = load_backbone(BACKBONE).preprocess
    images = [open_rgb(p) for p in toy.paths[:3]]
    aug = feat._view_inputs(View("aug", 0), images, toy.names[:3], pre)
    phase = feat._view_inputs(View("phase", 0), images, toy.names[:3], pre)
    torch.testing.assert_close(phase, phase_only_image(aug, amplitude=feat.FOURIER_PARAMS["phase_amplitude"]))
    mixed = feat._view_inputs(View("fourier", 0), images, toy.names[:3], pre, partners=toy)
    again = feat._view_inputs(View("fourier", 0), images, toy.names[:3], pre, partners=toy)
    torch.testing.assert_close(mixed, again)
    assert mixed.shape == (3, 3, 32, 32) and not torch.allclose(mixed, aug)
    assert float(mixed.min()) >= 0.0 and float(mixed.max()) <= 1.0


def test_quiet_extraction_prints_nothing(toy: ImageSet, tmp_path: Path, capsys) -> None:
    extract_views(toy, BACKBONE, [View("clean")], tmp_path / "q", quiet=True)
    assert capsys.readouterr().err == ""
    extract_views(toy, BACKBONE, [View("aug", 0)], tmp_path / "q", quiet=False)
    assert "toy/dom test-tiny32" in capsys.readouterr().err


def test_cache_root_and_default_views(tmp_path: Path, monkeypatch) -> None:
    assert feat.cache_root(DataOptions(cache_dir=tmp_path)) == tmp_path / "features"
    import platformdirs

    assert feat.cache_root(DataOptions()) == Path(platformdirs.user_cache_dir("u2cdr-bench")) / "features"
    names = [v.name for v in feat.default_views(2)]
    assert names == [
        "clean",
        "aug0",
        "aug1",
        "strong0",
        "strong1",
        "fourier0",
        "fourier1",
        "phase0",
        "phase1",
    ]
    assert [v.name for v in feat.default_views(0, ["strong"])] == ["clean", "strong0"]


# ------------------------------------------------------------------------------------ ImageAugment
def test_identity_augment_reproduces_the_resized_image() -> None:
    ident = ImageAugment(
        size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0, gray_p=0, blur_p=0, flip_p=0
    )
    x = torch.rand(2, 3, 32, 32)
    want = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(ident(x, torch.Generator().manual_seed(0)), want)


def test_flip_gray_solarize_by_hand() -> None:
    base = dict(size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0, blur_p=0)
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0, :, :4] = 1.0  # red left half
    g = torch.Generator().manual_seed(1)
    flipped = ImageAugment(**base, gray_p=0, flip_p=1.0)(x, g)
    assert float(flipped[0, 0, 0, 7]) == pytest.approx(1.0) and float(flipped[0, 0, 0, 0]) == pytest.approx(
        0.0
    )
    gray = ImageAugment(**base, gray_p=1.0, flip_p=0)(x, g)
    assert float(gray[0, 1, 0, 0]) == pytest.approx(0.299, abs=1e-6)  # luma of pure red
    torch.testing.assert_close(gray[0, 0], gray[0, 2])
    const = torch.full((1, 3, 8, 8), 0.75)
    sol = ImageAugment(**base, gray_p=0, flip_p=0, solarize_p=1.0)(const, g)
    torch.testing.assert_close(sol, torch.full_like(sol, 0.25))


def test_moco_augment_is_seeded_and_in_range() -> None:
    img = pil_to_tensor(
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8))
    )
    x = img[None].repeat(4, 1, 1, 1)
    a = MOCO_V2_AUG(x, torch.Generator().manual_seed(5))
    b = MOCO_V2_AUG(x, torch.Generator().manual_seed(5))
    c = MOCO_V2_AUG(x, torch.Generator().manual_seed(6))
    assert a.shape == (4, 3, 224, 224)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c) and not torch.allclose(a[0], a[1])
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_crop_box_stays_inside_and_follows_the_scale_range() -> None:
    aug = ImageAugment(scale=(0.3, 0.5))
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, h, w = aug.crop_box(60, 80, g)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.25 <= h * w / (60 * 80) <= 0.55  # rounding of the sides


def test_resize_center_crop_equals_torchvision() -> None:
    from torchvision import transforms as T

    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (61, 90, 3), dtype=np.uint8))
    ref = T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor()])(img)
    torch.testing.assert_close(resize_center_crop(img, 36, 32), ref, rtol=0, atol=1e-6)
    tall = img.transpose(Image.Transpose.TRANSPOSE)
    ref = T.Compose([T.Resize(36, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor()])
    torch.testing.assert_close(resize_center_crop(tall, 36, 32, "bicubic"), ref(tall), rtol=0, atol=1e-6)
