"""Run records: canonical hashing, atomic writes, validation of malformed files, loading."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from u2cdr_bench import records as rec_mod
from u2cdr_bench.errors import UserError
from u2cdr_bench.records import (
    SCHEMA_VERSION,
    build_record,
    canonical_json,
    config_hash,
    environment_info,
    is_done,
    load_records,
    read_record,
    record_path,
    validate_record,
    write_record,
)

CONFIG = {
    "method": "uem",
    "dataset": "digits",
    "setting": "open-set",
    "split_seed": 0,
    "query": "mnist",
    "gallery": "optdigits",
    "seed": 2024,
    "epochs_scale": 1.0,
    "mode": "image",
    "backbone": "small-cnn",
    "hparams": {"tau": 0.07, "k": 10},
}
ENV = {
    "u2cdr_bench": "0.1.0",
    "python": "3.11.7",
    "torch": "2.14.1",
    "numpy": "2.4.6",
    "platform": "test",
    "git_commit": None,
}


def make_record(config: dict | None = None) -> dict:
    return build_record(
        config or CONFIG,
        task={"query_abbrev": "MN", "gallery_abbrev": "OD", "pair": "MN→OD"},
        protocol={
            "hash": "0" * 64,
            "query_classes": ["0", "1"],
            "gallery_classes": ["0"],
            "shared_classes": ["0"],
        },
        metrics={"map_all": 51.2, "p@1": 60.1, "openset_accuracy": 70.0, "false_rejection": None},
        counts={"n_query": 10, "n_gallery": 5, "n_query_private": 5},
        timings={"load_s": 0.1, "fit_s": 1.0, "embed_s": 0.1, "eval_s": 0.1, "total_s": 1.3},
        method_info={"num_classes_given": None},
        env=ENV,
        created="2026-11-24T12:00:00+00:00",
    )


# ---------------------------------------------------------------------------------------------- hashing


def test_canonical_json_sorted_compact_unicode() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "→"}}) == '{"a":{"c":"→","d":[1,2]},"b":1}'


def test_config_hash_is_sha256_prefix_of_canonical_json() -> None:
    expected = hashlib.sha256(canonical_json(CONFIG).encode("utf-8")).hexdigest()[:16]
    assert config_hash(CONFIG) == expected
    assert len(expected) == 16 and int(expected, 16) >= 0


def test_config_hash_ignores_key_order() -> None:
    reordered = {k: CONFIG[k] for k in reversed(list(CONFIG))}
    reordered["hparams"] = {"k": 10, "tau": 0.07}
    assert list(reordered) != list(CONFIG)
    assert config_hash(reordered) == config_hash(CONFIG)


@pytest.mark.parametrize(
    "key, value",
    [
        ("method", "cds"),
        ("dataset", "pacs"),
        ("setting", "partial"),
        ("split_seed", 1),
        ("query", "optdigits"),
        ("gallery", "mnist"),
        ("seed", 2025),
        ("epochs_scale", 0.5),
        ("mode", "features"),
        ("backbone", "effnet-lite0"),
        ("hparams", {"tau": 0.07, "k": 11}),
    ],
)
def test_config_hash_changes_with_any_value(key: str, value: object) -> None:
    changed = copy.deepcopy(CONFIG)
    changed[key] = value
    assert config_hash(changed) != config_hash(CONFIG)


def test_record_path(tmp_path: Path) -> None:
    assert record_path(tmp_path, CONFIG) == tmp_path / f"{config_hash(CONFIG)}.json"


# ---------------------------------------------------------------------------------------------- writing


def test_write_read_round_trip_and_is_done(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "nested"  # created on demand
    record = make_record()
    assert not is_done(out, CONFIG)
    path = write_record(record, out)
    assert path == record_path(out, CONFIG)
    assert read_record(path) == record
    assert is_done(out, CONFIG)
    other = dict(CONFIG, seed=2025)
    assert not is_done(out, other)
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # no temp file left


def test_is_done_false_for_malformed_file(tmp_path: Path) -> None:
    record_path(tmp_path, CONFIG).write_text("{", encoding="utf-8")
    assert not is_done(tmp_path, CONFIG)


def _boom(*args: object, **kwargs: object) -> None:
    raise OSError("disk full")


def test_write_failure_during_dump_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def partial_dump(obj: object, fh, **kwargs: object) -> None:  # noqa: ANN001
        fh.write('{"schema": 1, "conf')
        raise OSError("disk full")

    monkeypatch.setattr(rec_mod.json, "dump", partial_dump)
    with pytest.raises(OSError, match="disk full"):
        write_record(make_record(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_at_replace_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec_mod.os, "replace", _boom)
    with pytest.raises(OSError, match="disk full"):
        write_record(make_record(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_record()
    path = write_record(old, tmp_path)
    new = copy.deepcopy(old)
    new["metrics"]["map_all"] = 99.0
    monkeypatch.setattr(rec_mod.os, "replace", _boom)
    with pytest.raises(OSError):
        write_record(new, tmp_path)
    assert read_record(path)["metrics"]["map_all"] == 51.2
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_rejects_malformed_record(tmp_path: Path) -> None:
    bad = make_record()
    bad["metrics"]["map_all"] = "51.2"
    with pytest.raises(UserError, match="metric 'map_all'"):
        write_record(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- reading


def _mutate(fn):  # noqa: ANN001, ANN202
    def text() -> str:
        record = make_record()
        fn(record)
        return json.dumps(record)

    return text


MALFORMED = {
    "not_json": (lambda: '{"schema": 1,', "not valid JSON"),
    "not_object": (lambda: "[1, 2]", "expected a JSON object, found list"),
    "missing_keys": (
        _mutate(lambda r: (r.pop("metrics"), r.pop("task"))),
        "missing key(s) 'task', 'metrics'",
    ),
    "schema": (_mutate(lambda r: r.update(schema=2)), "schema version 2"),
    "metric_string": (_mutate(lambda r: r["metrics"].update(map_all="high")), "metric 'map_all'"),
    "metric_bool": (_mutate(lambda r: r["metrics"].update(map_all=True)), "metric 'map_all'"),
    "metric_nan": (lambda: make_record_text_with_nan(), "metric 'map_all'"),
    "metrics_empty": (_mutate(lambda r: r.update(metrics={})), "'metrics' is empty"),
    "metrics_list": (_mutate(lambda r: r.update(metrics=[51.2])), "'metrics' must be an object"),
    "config_seed": (_mutate(lambda r: r["config"].update(seed="2024")), "config 'seed' must be an integer"),
    "config_missing": (_mutate(lambda r: r["config"].pop("method")), "config lacks 'method'"),
    "hash_mismatch": (_mutate(lambda r: r.update(config_hash="0" * 16)), "does not match its config"),
    "task_pair": (_mutate(lambda r: r["task"].pop("pair")), "task 'pair'"),
}


def make_record_text_with_nan() -> str:
    record = make_record()
    record["metrics"]["map_all"] = float("nan")
    return json.dumps(record)  # json writes NaN, which json.loads accepts


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_raises_user_error_naming_file(tmp_path: Path, case: str) -> None:
    make_text, problem = MALFORMED[case]
    path = tmp_path / f"bad_{case}.json"
    path.write_text(make_text(), encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_record(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert message.endswith(".") and "\n" not in message


def test_non_utf8_record(tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"x": "\xe9"}')
    with pytest.raises(UserError, match="latin.json: not UTF-8"):
        read_record(path)


def test_validate_accepts_null_and_missing_openset_metrics() -> None:
    record = make_record()
    record["metrics"]["openset_accuracy"] = None
    del record["metrics"]["false_rejection"]
    validate_record(record, "x.json")  # no error


def test_build_record_fills_identity_and_env() -> None:
    record = build_record(
        CONFIG,
        task={"query_abbrev": "MN", "gallery_abbrev": "OD", "pair": "MN→OD"},
        protocol={"hash": "x"},
        metrics={"map_all": 1.0},
        counts={},
        timings={},
    )
    assert record["schema"] == SCHEMA_VERSION
    assert record["config_hash"] == config_hash(CONFIG)
    assert record["method_info"] == {}
    assert record["created"].endswith("+00:00")
    assert set(record["env"]) == {"u2cdr_bench", "python", "torch", "numpy", "platform", "git_commit"}
    assert record["env"] == environment_info() | {"git_commit": record["env"]["git_commit"]}


# ---------------------------------------------------------------------------------------------- loading


def test_load_records_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(UserError) as info:
        load_records(missing)
    assert str(info.value) == (
        f"Records folder {missing} does not exist; run `u2cdr-bench run` first or pass --runs DIR."
    )
    a_file = tmp_path / "file.json"
    a_file.write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="does not exist"):
        load_records(a_file)


def test_load_records_empty_recursive_sorted(tmp_path: Path) -> None:
    assert load_records(tmp_path) == []
    r1 = make_record()
    r2 = make_record(dict(CONFIG, seed=2025))
    r3 = make_record(dict(CONFIG, seed=2026))
    p1 = write_record(r1, tmp_path / "b")
    p2 = write_record(r2, tmp_path)
    p3 = write_record(r3, tmp_path / "a" / "deep")
    (tmp_path / ".half.tmp").write_text("{", encoding="utf-8")  # a stray temp file is not a record
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    loaded = load_records(tmp_path)
    by_path = {p1: r1, p2: r2, p3: r3}
    assert loaded == [by_path[p] for p in sorted(by_path)]


def test_load_records_reports_bad_file(tmp_path: Path) -> None:
    write_record(make_record(), tmp_path)
    (tmp_path / "zz.json").write_text("not json", encoding="utf-8")
    with pytest.raises(UserError, match="zz.json: not valid JSON"):
        load_records(tmp_path)
