"""Real datasets (u2cdr_bench/data/real.py, manifests.py): specs, layouts, loaders, errors.

Office-31, Office-Home and DomainNet images are not available here: their loaders are tested on small trees of
generated JPEGs written at the paths of the first lines of the public image lists in ../shared/data/lists
(skipped when that folder is absent). PACS is checked on the real copy when present.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2cdr_bench import backbones as bb
from u2cdr_bench.data import DataOptions, get_dataset
from u2cdr_bench.data import manifests as mf
from u2cdr_bench.data.images import read_image_list
from u2cdr_bench.data.real import load_domain_for_run, verify_dataset
from u2cdr_bench.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LISTS = SHARED / "lists"
needs_lists = pytest.mark.skipif(not LISTS.is_dir(), reason="../shared/data/lists absent")
BACKBONE = "test-tiny32"
if BACKBONE not in bb.BACKBONES:
    bb.register_backbone(
        bb.BackboneSpec(
            BACKBONE, "tests only", 64, bb.Preprocess(36, 32), bb.BACKBONES.get("tiny-random").make, None
        )
    )


@pytest.fixture(autouse=True)
def _few_views(monkeypatch) -> None:
    monkeypatch.setenv("U2CDR_EXTRA_VIEWS", "none")


def _opts(tmp_path: Path, home: Path, **kw) -> DataOptions:
    kw = {"n_views": 1, **kw}
    return DataOptions(data_dir=home, cache_dir=tmp_path / "cache", backbone=BACKBONE, quiet=True, **kw)


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)).save(path)


def _plant(list_file: Path, home: Path, per_class: int, classes: set[str] | None = None, rename=None) -> list:
    """Write tiny JPEGs at the first ``per_class`` paths of each class of a list -> (path, label, class)."""
    seen: dict[str, int] = {}
    planted = []
    for n, line in enumerate(list_file.read_text().splitlines()):
        rel, label = line.rsplit(" ", 1)
        parts = rel.split("/")
        cls = parts[-2]
        if (classes is not None and cls not in classes) or seen.get(cls, 0) >= per_class:
            continue
        seen[cls] = seen.get(cls, 0) + 1
        target = rename(rel) if rename else rel
        _jpeg(home / target, n)
        planted.append((target, int(label), cls))
    return planted


# ----------------------------------------------------------------------------------------------- specs
def test_specs_domains_pairs_and_keys() -> None:
    pacs = get_dataset("pacs")
    assert [d.abbrev for d in pacs.domains] == ["A", "C", "P", "S"] and len(pacs.all_pairs()) == 12
    assert pacs.domain("Ph").name == "photo" and pacs.paper_key is None
    o31 = get_dataset("office31")
    assert [(d.name, d.abbrev) for d in o31.domains] == [("amazon", "A"), ("dslr", "D"), ("webcam", "W")]
    assert len(o31.all_pairs()) == 6 and len(o31.class_names) == 31 and o31.paper_key == "office31"
    oh = get_dataset("officehome")
    assert [d.abbrev for d in oh.domains] == ["A", "C", "P", "R"] and len(oh.all_pairs()) == 12
    assert oh.domain("Real World").name == "real" and len(oh.class_names) == 65
    dn = get_dataset("domainnet")
    assert dn.class_names == ("bird", "feather", "teapot", "tiger", "whale", "windmill", "zebra")
    assert [(dn.abbrev(q), dn.abbrev(g)) for q, g in dn.all_pairs()] == [
        ("Qu", "Cl"),
        ("Cl", "Pa"),
        ("Pa", "In"),
        ("In", "Sk"),
        ("Sk", "Re"),
    ]
    for spec in (pacs, o31, oh, dn):
        assert spec.kind == "real" and spec.profile == "features" and spec.input_kind == "features"
    assert oh.paper_key == "officehome" and dn.paper_key == "domainnet"
    assert mf.PACS.expected_total == 9991 and mf.OFFICE31.expected_total == 4110
    assert mf.OFFICEHOME.expected_total == 2427 + 4365 + 4439 + 4357


@needs_lists
@pytest.mark.parametrize(
    ("manifest", "lists"),
    [
        (
            mf.OFFICE31,
            {"amazon": "office/amazon.txt", "dslr": "office/dslr.txt", "webcam": "office/webcam.txt"},
        ),
        (
            mf.OFFICEHOME,
            {
                "art": "office_home/Art.txt",
                "clipart": "office_home/Clipart.txt",
                "product": "office_home/Product.txt",
                "real": "office_home/Real.txt",
            },
        ),
    ],
)
def test_class_order_and_counts_match_the_image_lists(manifest, lists: dict[str, str]) -> None:
    for domain, rel in lists.items():
        items = read_image_list(LISTS / rel, Path("/"))
        assert len(items) == manifest.domain(domain).expected_count
        for path, label in items:
            assert path.parent.name == manifest.class_names[label]


# ----------------------------------------------------------------------------- loaders on list layouts
@needs_lists
def test_office31_loader_on_the_list_layout(tmp_path: Path) -> None:
    home = tmp_path / "home"
    four = set(mf.OFFICE31_CLASSES[:4])  # 4 of the 31 classes keep the tree small
    planted = _plant(LISTS / "office" / "dslr.txt", home / "office31", per_class=1, classes=four)
    spec = get_dataset("office31")
    with pytest.warns(RuntimeWarning, match="no images for class"):
        d = spec.load("D", _opts(tmp_path, home))
    assert d.kind == "features" and d.x.shape == (4, 64) and d.views.shape == (1, 4, 64)
    assert d.labels.tolist() == sorted(p[1] for p in planted) == [0, 1, 2, 3]
    assert d.extra_views == {} and d.info["skipped_files"] == 0
    with pytest.warns(RuntimeWarning):
        again = load_domain_for_run(spec, "dslr", _opts(tmp_path, home))
    torch.testing.assert_close(again.x, d.x)


@needs_lists
@pytest.mark.parametrize("real_folder", ["Real", "Real World", "OfficeHomeDataset_10072016/Real World"])
def test_officehome_real_folder_variants(tmp_path: Path, real_folder: str) -> None:
    home = tmp_path / "home"
    classes = {"Alarm_Clock", "Bike", "Webcam"}
    planted = _plant(
        LISTS / "office_home" / "Real.txt",
        home / "officehome",
        per_class=2,
        classes=classes,
        rename=lambda rel: rel.replace("Real/", real_folder + "/", 1),
    )
    spec = get_dataset("officehome")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 62 of 65 classes have no images here
        d = spec.load("R", _opts(tmp_path, home))
    idx = {c: spec.class_names.index(c) for c in classes}
    assert d.labels.tolist() == sorted(p[1] for p in planted) == sorted([idx[c] for c in classes] * 2)
    assert idx == {"Alarm_Clock": 0, "Bike": 4, "Webcam": 64}


@needs_lists
def test_domainnet_loader_reads_only_the_seven_classes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seven = set(mf.DOMAINNET7_CLASSES)
    planted = _plant(LISTS / "domainnet" / "sketch.txt", home / "domainnet", per_class=1, classes=seven)
    _plant(LISTS / "domainnet" / "sketch.txt", home / "domainnet", per_class=1, classes={"aircraft_carrier"})
    assert {p[2] for p in planted} == seven - {"windmill"}  # windmill is not among the 126 list classes
    spec = get_dataset("domainnet")
    with pytest.warns(RuntimeWarning, match="no images for class.*windmill") as rec:
        d = spec.load("Sk", _opts(tmp_path, home))
    assert not any("aircraft_carrier" in str(r.message) for r in rec)  # other classes: ignored silently
    names = [spec.class_names[i] for i in d.labels]
    assert names == ["bird", "feather", "teapot", "tiger", "whale", "zebra"]
    rep = verify_dataset("domainnet", home, check_images=False)
    sk = next(c for c in rep.domains if c.name == "sketch")
    assert sk.count == 6 and sk.missing_classes == ["windmill"] and not rep.ok
    assert "7 images over all 7 class folders (differs from the published 69128" in sk.notes[0]


def test_finetune_mode_gives_images_and_torch_augmenters(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for i, c in enumerate(("dog", "house")):
        _jpeg(home / "pacs" / "photo" / c / f"{i}.jpg", i)
    spec = get_dataset("pacs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = spec.load("photo", _opts(tmp_path, home, mode="finetune"))
    assert d.kind == "image" and d.x.shape == (2, 3, 32, 32) and d.labels.tolist() == [0, 5]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    v1, v2 = d.augment(d.x, g1), d.augment(d.x, g2)
    assert v1.shape == (2, 3, 32, 32)  # aug-plus crops to the backbone's input size
    torch.testing.assert_close(v1, v2)
    assert d.strong_augment is not None and d.unlabeled().view(torch.arange(2), g1, "strong").shape[0] == 2


def test_extra_view_sets_and_the_fourier_fallback(tmp_path: Path, monkeypatch) -> None:
    from u2cdr_bench import features as feat

    home = tmp_path / "home"
    for k in range(3):
        _jpeg(home / "pacs" / "photo" / "dog" / f"{k}.jpg", k)
        _jpeg(home / "pacs" / "sketch" / "dog" / f"{k}.jpg", 10 + k)
    spec = get_dataset("pacs")
    monkeypatch.setenv("U2CDR_EXTRA_VIEWS", "strong,fourier,phase")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = spec.load("photo", _opts(tmp_path, home, n_views=2))
        assert {k: tuple(v.shape) for k, v in d.extra_views.items()} == {
            "strong": (2, 3, 64),
            "fourier": (2, 3, 64),
            "phase": (2, 3, 64),
        }
        assert not torch.allclose(d.extra_views["fourier"], d.extra_views["strong"])
        assert "partners from all domains" in d.info["fourier_views"]
        monkeypatch.setattr(feat, "fourier_available", lambda: False)
        fb = spec.load("photo", _opts(tmp_path, home, n_views=2))
    assert set(fb.extra_views) == {"strong", "fourier"}  # no phase images without the block
    torch.testing.assert_close(fb.extra_views["fourier"], fb.extra_views["strong"])
    torch.testing.assert_close(fb.extra_views["strong"], d.extra_views["strong"])  # same cache entries
    assert "fallback" in fb.info["fourier_views"]
    monkeypatch.setenv("U2CDR_EXTRA_VIEWS", "strong,mixup")
    with pytest.raises(UserError, match="unknown view set 'mixup'"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spec.load("photo", _opts(tmp_path, home))


# ----------------------------------------------------------------------------------------------- errors
def test_missing_dataset_says_where_it_looked_and_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        get_dataset("officehome").load("art", _opts(tmp_path, tmp_path / "empty"))
    msg = str(err.value)
    assert str(tmp_path / "empty" / "officehome") in msg and "Art" in msg
    assert "u2cdr-bench data download officehome" in msg
    with pytest.raises(UserError, match="place it by hand"):
        get_dataset("pacs").load("photo", _opts(tmp_path, tmp_path / "empty"))


def test_no_data_dir_names_the_option_and_the_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("U2CDR_DATA", raising=False)
    with pytest.raises(UserError, match="--data-dir or set U2CDR_DATA"):
        get_dataset("pacs").load("photo", DataOptions(cache_dir=tmp_path, backbone=BACKBONE))
    home = tmp_path / "h"
    _jpeg(home / "pacs" / "sketch" / "dog" / "a.jpg", 0)
    monkeypatch.setenv("U2CDR_DATA", str(home))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = get_dataset("pacs").load(
            "S", DataOptions(cache_dir=tmp_path / "c", backbone=BACKBONE, quiet=True)
        )
    assert len(d) == 1


def test_truncated_jpeg_is_skipped_with_a_count(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for k in range(3):
        _jpeg(home / "pacs" / "cartoon" / "horse" / f"{k}.jpg", k)
    bad = home / "pacs" / "cartoon" / "horse" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = get_dataset("pacs").load("cartoon", _opts(tmp_path, home))
    assert any("skipped 1 unreadable image file(s): cartoon/horse/1.jpg" in str(r.message) for r in rec)
    assert len(d) == 2 and d.info["skipped_files"] == 1 and d.views.shape == (1, 2, 64)
    rep = verify_dataset("pacs", home)
    assert rep.domains[1].unreadable == ["horse/1.jpg"] and not rep.ok


@pytest.mark.dataset
@pytest.mark.skipif(not (SHARED / "pacs").is_dir(), reason="../shared/data/pacs absent")
def test_pacs_on_disk_matches_the_manifest() -> None:
    rep = verify_dataset("pacs", SHARED, check_images=False)
    assert rep.ok, rep.lines()
    assert [d.count for d in rep.domains] == [2048, 2344, 1670, 3929]
    assert rep.domains[3].class_counts["house"] == 80
    assert rep.root == SHARED / "pacs"
