"""Tests of the batch image augmentations (u2cdr_bench/data/augment.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from u2cdr_bench.data.augment import DigitAugment, affine_transform, dilate, erode, random_erase

ZERO = dict(
    rotation=0.0,
    scale=0.0,
    translate=0.0,
    shear=0.0,
    thickness=0.0,
    brightness=0.0,
    contrast=0.0,
    noise=0.0,
    erase_prob=0.0,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """A fixed batch of 64 real digits: sklearn's 8 x 8 digits upsampled to 16 x 16, in [0, 1]."""
    from sklearn.datasets import load_digits

    imgs = torch.from_numpy(load_digits().images[:64].astype(np.float32) / 16.0)[:, None]
    return F.interpolate(imgs, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)


def _identity(b: int) -> dict[str, torch.Tensor]:
    return dict(
        angle=torch.zeros(b), scale=torch.ones(b), shear=torch.zeros(b), tx=torch.zeros(b), ty=torch.zeros(b)
    )


def _one_pixel(h: int, w: int, row: int, col: int) -> torch.Tensor:
    x = torch.zeros(1, 1, h, w)
    x[0, 0, row, col] = 1.0
    return x


def _argmax2d(x: torch.Tensor) -> tuple[int, int]:
    flat = int(x[0, 0].argmax())
    return divmod(flat, x.shape[-1])


@pytest.mark.parametrize("strong", [False, True])
def test_same_seed_same_output_different_seed_differs(batch: torch.Tensor, strong: bool) -> None:
    aug = DigitAugment(strong=strong)
    a = aug(batch, _gen(3))
    b = aug(batch, _gen(3))
    c = aug(batch, _gen(4))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.01
    # successive calls on one generator give different views
    g = _gen(3)
    assert not torch.equal(aug(batch, g), aug(batch, g))


@pytest.mark.parametrize("strong", [False, True])
def test_shape_dtype_range(batch: torch.Tensor, strong: bool) -> None:
    out = DigitAugment(strong=strong)(batch, _gen(0))
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    rgb = torch.rand(4, 3, 20, 24, generator=_gen(1))
    out = DigitAugment(strong=strong)(rgb, _gen(0))
    assert out.shape == (4, 3, 20, 24) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_identity_parameters_return_input(batch: torch.Tensor) -> None:
    out = DigitAugment(**ZERO)(batch, _gen(0))
    torch.testing.assert_close(out, batch, atol=1e-5, rtol=0)
    strong_zero = DigitAugment(strong=True, **ZERO)(batch, _gen(0))
    torch.testing.assert_close(strong_zero, batch, atol=1e-5, rtol=0)
    # the affine warp itself with identity parameters, on a non-square random batch
    x = torch.rand(5, 2, 12, 20, generator=_gen(2))
    torch.testing.assert_close(affine_transform(x, **_identity(5)), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("tx", "ty", "expected"),
    [(1.0, 0.0, (5, 8)), (-1.0, 0.0, (5, 6)), (0.0, 1.0, (6, 7)), (-2.0, 1.0, (6, 5))],
)
def test_pure_translation_moves_a_pixel(tx: float, ty: float, expected: tuple[int, int]) -> None:
    x = _one_pixel(16, 16, row=5, col=7)
    p = _identity(1) | dict(tx=torch.tensor([tx]), ty=torch.tensor([ty]))
    out = affine_transform(x, **p)
    assert _argmax2d(out) == expected
    assert float(out[0, 0, expected[0], expected[1]]) == pytest.approx(1.0, abs=1e-5)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)


def test_translation_through_digit_augment_moves_pixel_by_at_most_the_range() -> None:
    """translate=1/16 of a 16-px side: the pixel's centre of mass moves by at most 1 px in x and y."""
    x = _one_pixel(16, 16, row=8, col=8).repeat(32, 1, 1, 1)
    out = DigitAugment(**(ZERO | dict(translate=1 / 16)))(x, _gen(0))
    grid = torch.arange(16.0)
    mass = out.sum(dim=(1, 2, 3))
    cy = (out[:, 0].sum(2) * grid).sum(1) / mass
    cx = (out[:, 0].sum(1) * grid).sum(1) / mass
    torch.testing.assert_close(mass, torch.ones(32), atol=1e-5, rtol=0)  # interior pixel: mass kept
    assert float((cx - 8).abs().max()) <= 1.0 + 1e-5 and float((cy - 8).abs().max()) <= 1.0 + 1e-5
    assert float((cx - 8).abs().max()) > 0.5  # the shifts do use the range


def test_rotation_scale_shear_hand_computed() -> None:
    # 16 x 16: pixel (row 7, col 11) sits at (x, y) = (3.5, -0.5) from the centre; +90 deg (clockwise on
    # screen, y down) sends it to (0.5, 3.5) = (row 11, col 8).
    out = affine_transform(_one_pixel(16, 16, 7, 11), **(_identity(1) | dict(angle=torch.tensor([90.0]))))
    assert _argmax2d(out) == (11, 8) and float(out.max()) == pytest.approx(1.0, abs=1e-4)
    # 15 x 15 (centre pixel 7): pixel (7, 9) is at x = 2; scale 2 puts it at x = 4 -> column 11.
    out = affine_transform(_one_pixel(15, 15, 7, 9), **(_identity(1) | dict(scale=torch.tensor([2.0]))))
    assert _argmax2d(out) == (7, 11) and float(out.max()) == pytest.approx(1.0, abs=1e-5)
    # shear 45 deg: x' = x + y; pixel (10, 7) is at (0, 3) -> (3, 3) = (row 10, col 10).
    out = affine_transform(_one_pixel(15, 15, 10, 7), **(_identity(1) | dict(shear=torch.tensor([45.0]))))
    assert _argmax2d(out) == (10, 10) and float(out.max()) == pytest.approx(1.0, abs=1e-5)


def test_dilate_erode_match_naive_loops() -> None:
    x = torch.rand(2, 1, 6, 7, generator=_gen(5))
    pad_hi = F.pad(x, (1, 1, 1, 1), value=-1.0)
    pad_lo = F.pad(x, (1, 1, 1, 1), value=2.0)
    naive_max = torch.zeros_like(x)
    naive_min = torch.zeros_like(x)
    for i in range(6):
        for j in range(7):
            naive_max[..., i, j] = pad_hi[..., i : i + 3, j : j + 3].amax(dim=(-1, -2))
            naive_min[..., i, j] = pad_lo[..., i : i + 3, j : j + 3].amin(dim=(-1, -2))
    torch.testing.assert_close(dilate(x), naive_max)
    torch.testing.assert_close(erode(x), naive_min)


def test_thickness_stays_between_erosion_and_dilation(batch: torch.Tensor) -> None:
    out = DigitAugment(**(ZERO | dict(thickness=1.0)))(batch, _gen(0))
    assert bool((out >= erode(batch) - 1e-6).all()) and bool((out <= dilate(batch) + 1e-6).all())
    ink = batch.sum(dim=(1, 2, 3))
    change = out.sum(dim=(1, 2, 3)) - ink
    assert float(change.max()) > 1.0 and float(change.min()) < -1.0  # some thicker, some thinner


def test_contrast_brightness_are_affine_per_sample() -> None:
    x = 0.4 + 0.2 * torch.rand(6, 1, 8, 8, generator=_gen(6))  # no clamping with these ranges
    out = DigitAugment(**(ZERO | dict(contrast=0.3, brightness=0.1)))(x, _gen(0))
    xc = x - x.mean(dim=(1, 2, 3), keepdim=True)
    oc = out - out.mean(dim=(1, 2, 3), keepdim=True)
    c = (oc * xc).sum(dim=(1, 2, 3)) / (xc * xc).sum(dim=(1, 2, 3))
    torch.testing.assert_close(oc, c.view(-1, 1, 1, 1) * xc, atol=1e-5, rtol=0)
    assert float(c.min()) >= 0.7 - 1e-5 and float(c.max()) <= 1.3 + 1e-5
    shift = (out - x).mean(dim=(1, 2, 3))
    assert float(shift.abs().max()) <= 0.1 + 1e-5 and float(shift.abs().max()) > 0.01


def test_noise_std_is_bounded() -> None:
    x = torch.full((8, 1, 32, 32), 0.5)
    out = DigitAugment(**(ZERO | dict(noise=0.05)))(x, _gen(0))
    std = (out - x).std(dim=(1, 2, 3))
    assert float(std.max()) < 0.06 and float(std.max()) > 0.005


def test_random_erase_rectangle() -> None:
    x = torch.ones(10, 1, 16, 16)
    out = random_erase(x, _gen(0), prob=1.0, size=(0.5, 0.5))
    for k in range(10):
        zeros = (out[k, 0] == 0).nonzero()
        assert len(zeros) == 64  # an 8 x 8 rectangle
        (r0, c0), (r1, c1) = zeros.min(0).values.tolist(), zeros.max(0).values.tolist()
        assert (r1 - r0, c1 - c0) == (7, 7)
    assert torch.equal(random_erase(x, _gen(0), prob=0.0, size=(0.5, 0.5)), x)


def test_strong_differs_more_than_default(batch: torch.Tensor) -> None:
    g = _gen(0)
    weak = torch.stack([(DigitAugment()(batch, g) - batch).abs().mean() for _ in range(4)]).mean()
    strong = torch.stack(
        [(DigitAugment(strong=True)(batch, g) - batch).abs().mean() for _ in range(4)]
    ).mean()
    assert 0.02 < float(weak) < float(strong)
    assert float(strong) > 1.3 * float(weak)


def test_params_and_validation() -> None:
    aug = DigitAugment(strong=True, rotation=5.0)
    p = aug.params()
    assert p["strong"] is True and p["rotation"] == 5.0 and p["erase_prob"] == 0.5
    assert DigitAugment().params()["erase_prob"] == 0.0
    with pytest.raises(ValueError, match="scale"):
        DigitAugment(scale=1.0)
    with pytest.raises(ValueError, match="noise"):
        DigitAugment(noise=-0.1)
    with pytest.raises(ValueError, match="erase_size"):
        DigitAugment(erase_size=(0.6, 0.2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        DigitAugment()(torch.zeros(16, 16), _gen(0))
