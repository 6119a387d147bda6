"""Protocol registry: settings as data, seeded class lists, committed files, hashes."""

from __future__ import annotations

import pytest
import yaml

from u2cdr_bench.data.registry import DATASETS, dataset_names, get_dataset
from u2cdr_bench.errors import UserError
from u2cdr_bench.protocols import generate, generated_path, get_protocol, render_generated, setting_names

NAMES = tuple("abcdefg")


def test_settings_are_the_three_of_the_paper():
    assert setting_names() == ["close-set", "partial", "open-set"]


def test_close_set_keeps_everything():
    p = generate("x", NAMES, "close-set", 0)
    assert p.query_classes == NAMES and p.gallery_classes == NAMES and p.query_private == ()


def test_partial_query_keeps_floor_half_gallery_all():
    p = generate("x", NAMES, "partial", 0)
    assert len(p.query_classes) == 3 and p.gallery_classes == NAMES
    assert set(p.query_classes) <= set(NAMES)
    assert p.shared_classes == p.query_classes and p.query_private == ()
    # kept in the dataset's class order
    assert list(p.query_classes) == sorted(p.query_classes, key=NAMES.index)


def test_open_set_gallery_keeps_floor_half_query_all():
    p = generate("x", NAMES, "open-set", 0)
    assert p.query_classes == NAMES and len(p.gallery_classes) == 3
    assert set(p.query_private) == set(NAMES) - set(p.gallery_classes)


def test_split_is_a_pure_function_of_its_inputs():
    a = generate("x", NAMES, "open-set", 0)
    assert a == generate("x", NAMES, "open-set", 0) and a.hash == generate("x", NAMES, "open-set", 0).hash
    draws = {generate("x", NAMES, "open-set", s).gallery_classes for s in range(10)}
    assert len(draws) > 3  # the split seed changes the draw
    assert generate("x", NAMES, "partial", 0).hash != generate("x", NAMES, "open-set", 0).hash


def test_too_few_classes_is_a_user_error():
    with pytest.raises(UserError, match="at least 2 classes"):
        generate("x", ("only",), "partial", 0)


@pytest.mark.parametrize("name", ["digits"])
def test_committed_lists_equal_regenerated(name):
    dataset_names()
    spec = DATASETS.get(name)
    path = generated_path(name)
    assert path.exists(), f"{path} missing: run `u2cdr-bench protocol generate`"
    assert path.read_text() == render_generated(spec)
    body = yaml.safe_load(path.read_text())
    for setting in setting_names():
        for seed in (0, 1, 2):
            entry = body["splits"][f"{setting}/seed{seed}"]
            p = get_protocol(spec, setting, seed)
            assert entry["hash"] == p.hash
            assert tuple(entry["gallery_classes"]) == p.gallery_classes


def test_every_registered_dataset_has_committed_lists():
    for name in dataset_names():
        assert generated_path(name).read_text() == render_generated(DATASETS.get(name)), name


def test_digits_open_set_seed0_pinned():
    p = get_protocol(get_dataset("digits"), "open-set", 0)
    assert p.gallery_classes == ("0", "1", "4", "5", "8")
    assert p.query_private == ("2", "3", "6", "7", "9")


def test_unknown_setting_lists_choices():
    with pytest.raises(UserError, match="close-set, open-set, partial"):
        get_protocol(get_dataset("digits"), "half-set", 0)
