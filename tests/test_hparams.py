"""Hyper-parameter spaces (u2cdr_bench/methods/hparams.py): every key of every method is declared, every
default and profile value lies in its space, every key is read by the method's code, and the checks reject
exactly what lies outside."""

from __future__ import annotations

import ast
import inspect

import pytest

from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import get_method, method_names
from u2cdr_bench.methods.base import VIEW_SETS, Method
from u2cdr_bench.methods.hparams import Choice, Items, Range, check_declared, check_value, describe

PROFILES = ("paper", "digits", "features", "domainnet")
METHOD_PROFILES = (None, "office31", "officehome", "domainnet")


def _all_values(cls: type[Method]) -> dict[str, list]:
    values: dict[str, list] = {}
    for prof in PROFILES:
        for dataset in METHOD_PROFILES:  # the official per-dataset values too
            for k, v in cls.hparams_for(prof, dataset).items():
                values.setdefault(k, []).append((prof, v))
    return values


@pytest.mark.parametrize("name", method_names())
def test_every_key_has_a_range_or_choices_and_every_value_fits(name):
    cls = get_method(name)
    space = cls.space()
    values = _all_values(cls)
    assert check_declared(name, {k: v[0][1] for k, v in values.items()}, space) == []
    for key, vals in values.items():
        for prof, v in vals:
            default = cls.resolve_hparams(prof)[key]  # the profile's default fixes the inferred type
            check_value(name, key, v, space.get(key), default)  # raises if a value is out of its space


#: Assignments that declare values or spaces (their string keys do not count as reads).
_DECLARATIONS = {"defaults", "profiles", "hparam_space", "_SPACE", "_LARGE_LR", "SCHEDULES", "BASE_HPARAMS"}


def keys_read_in(source: str) -> set[str]:
    """String constants of ``source`` outside the declaration dicts: ``hp["k"]``, ``hp.get("k")`` and names
    listed in tables such as DGDIR's ``_CONTRAST_TERMS``."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
            isinstance(t, ast.Name) and t.id in _DECLARATIONS for t in targets
        ):
            skip |= {id(n) for n in ast.walk(node.value)} if node.value is not None else set()
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    }


def _read_keys(cls: type) -> set[str]:
    keys: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("u2cdr_bench"):
            keys |= keys_read_in(inspect.getsource(inspect.getmodule(klass)))
    return keys


def test_the_read_check_can_fail():
    src = 'defaults = {"used": 1, "unused": 2}\ndef fit(hp):\n    return hp["used"]\n'
    assert "used" in keys_read_in(src) and "unused" not in keys_read_in(src)


@pytest.mark.parametrize("name", method_names())
def test_every_key_is_read_by_the_method(name):
    cls = get_method(name)
    keys = {k for prof in PROFILES for k in cls.resolve_hparams(prof)}
    unread = sorted(keys - _read_keys(cls))
    assert unread == [], f"{name} has keys its code never reads: {unread}"


def test_uem_has_no_detector_threshold_and_the_generic_methods_do():
    for name in method_names():
        cls = get_method(name)
        has = "detector_threshold" in cls.resolve_hparams("paper")
        assert has == cls.generic_detector, name
    assert not get_method("uem").generic_detector and not get_method("uem-no-sel").generic_detector
    with pytest.raises(UserError, match="has its own open-set detector and does not read detector_threshold"):
        get_method("uem").resolve_hparams("digits", {"detector_threshold": "diameter"})
    assert get_method("coda").resolve_hparams("digits", {"detector_threshold": "diameter"})[
        "detector_threshold"
    ] == ("diameter")


def test_views_are_declared_view_sets():
    for name in method_names():
        views = get_method(name).views
        assert views[0] == "clean" and set(views) <= set(VIEW_SETS), name
    assert get_method("pretrained").views == ("clean",)
    assert get_method("uem").views == ("clean", "aug")
    assert "strong" in get_method("dn2a").views and {"fourier", "phase"} <= set(get_method("dgdir").views)


@pytest.mark.parametrize(
    "space, default, good, bad, phrase",
    [
        (
            Range(0, open_low=True),
            0.1,
            [1, 0.5, 1e-9],
            [0, -1, "x", True, float("nan"), None],
            "a number > 0",
        ),
        (Range(1), 10, [1, 500], [0, 2.5, "3", False], "an integer >= 1"),
        (Range(0, 1, open_high=True), 0.9, [0, 0.999], [1, 1.5, -0.1], "a number in [0, 1)"),
        (Choice("a", "b"), "a", ["a", "b"], ["c", 1, None], "one of a, b"),
        (None, True, [True, False], [1, "true", None], "true or false"),
        (Items(Range(1, kind=int)), [1, 2], [[1], [3, 4]], [[], [0], [1.5], "1", None], "a non-empty list"),
        (Items(Range(1, kind=int), nullable=True), None, [None, [2]], [[0], 3], "(or null)"),
    ],
)
def test_check_value_accepts_inside_and_rejects_outside(space, default, good, bad, phrase):
    for v in good:
        check_value("m", "k", v, space, default)
    for v in bad:
        with pytest.raises(UserError) as e:
            check_value("m", "k", v, space, default)
        msg = str(e.value)
        assert (
            msg.startswith("Hyper-parameter k of method m must be ") and phrase in msg and msg.endswith(".")
        )
    kind = type(default) if default is not None else None
    assert phrase in describe(space, kind)


def test_overrides_keep_the_given_value_and_validate_cross_keys():
    uem = get_method("uem")
    assert uem.resolve_hparams("digits", {"lr": 1})["lr"] == 1  # an int for a float key is accepted as given
    with pytest.raises(UserError, match=r"elbow_k_max of method uem must be >= elbow_k_min \(5\), got 4"):
        uem.resolve_hparams("digits", {"elbow_k_min": 5, "elbow_k_max": 4})
    assert uem.resolve_hparams("digits", {"elbow_k_min": 5, "elbow_k_max": 5})["elbow_k_max"] == 5
