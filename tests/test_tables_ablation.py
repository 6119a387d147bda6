"""``table --ablation``: per-setting summaries, UEM's diagnostics and the paired test, by hand.

Records are the committed fixtures (tests/fixtures/records) with their metrics and ``method_info`` rewritten,
so their configs (and hashes) stay valid and two folders share cells.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from u2cdr_bench.cli import app
from u2cdr_bench.records import load_records
from u2cdr_bench.tables.ablation import ablation_rows, group_by_method, render_ablation, summarise

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def _rec(setting: str, query: str, value: float, **info: object) -> dict:
    metrics = {"map_all": value}
    if setting == "open-set":
        metrics.update(openset_accuracy=info.pop("acc", 50.0), false_rejection=info.pop("fr", 10.0))
    return {
        "config": {
            "dataset": "d",
            "setting": setting,
            "query": query,
            "gallery": "g",
            "seed": 2024,
            "split_seed": 0,
            "method": str(info.pop("method", "uem")),
        },
        "metrics": metrics,
        "method_info": dict(info),
    }


def _clusterings(*merged_k: tuple[int, int, int]) -> list[dict]:
    """Stage-1 clusterings (merged, k_a, k_b) in order, then one stage-2 entry that must be ignored."""
    out = [{"stage": 1, "merged": m, "k_a": a, "k_b": b} for m, a, b in merged_k]
    return out + [{"stage": 2, "merged": 99, "k_a": 99, "k_b": 99}]


def test_summarise_by_hand() -> None:
    recs = [
        _rec("close-set", "a", 40.0, clusterings=_clusterings((5, 3, 3), (0, 10, 14)), sn2m_agree=0.2),
        _rec("close-set", "b", 30.0, clusterings=_clusterings((2, 6, 8)), sn2m_agree=0.4),
        _rec("open-set", "a", 60.0, acc=90.0, fr=20.0, clusterings=_clusterings((1, 7, 7))),
        _rec("open-set", "b", 70.0, acc=70.0, fr=40.0, clusterings=_clusterings((0, 9, 7))),
    ]
    s = summarise(recs)
    assert set(s) == {"close-set", "open-set"}  # no partial records: no partial entry
    close, open_ = s["close-set"], s["open-set"]
    assert close["n"] == 2 and close["map"] == pytest.approx(35.0)
    # the last stage-1 clustering counts: (0, 10, 14) and (2, 6, 8)
    assert close["merged"] == pytest.approx(1.0)
    assert close["runs_merging"] == pytest.approx(0.5)
    assert close["k"] == pytest.approx((12.0 + 7.0) / 2)
    assert close["agree"] == pytest.approx(0.3)
    assert "acc" not in close
    assert open_["acc"] == pytest.approx(80.0) and open_["fr"] == pytest.approx(30.0)
    assert open_["runs_merging"] == pytest.approx(0.5) and open_["k"] == pytest.approx(7.5)
    assert "agree" not in open_  # no record carries it


def test_paired_difference_and_exact_wilcoxon_by_hand() -> None:
    ref = [_rec("close-set", q, 50.0) for q in "abcdef"]
    # differences 1, 2, 3, 4, 5, -0.5: |d| ranks 2..6 positive, 1 negative -> T- = 1, T+ = 20; the exact
    # two-sided p is 2 * #{sign patterns with T- <= 1} / 2**6 = 2 * 2 / 64
    diffs = [1.0, 2.0, 3.0, 4.0, 5.0, -0.5]
    row = [_rec("close-set", q, 50.0 + d) for q, d in zip("abcdef", diffs, strict=True)]
    row.append(_rec("close-set", "z", 99.0))  # a cell the reference lacks: not paired
    first, second = ablation_rows([("ref", ref), ("new", row)])
    assert math.isnan(first.diff) and first.shared == 0
    assert second.shared == 6 and second.higher == 5
    assert second.diff == pytest.approx(sum(diffs) / 6)
    assert second.p == pytest.approx(4 / 64)
    assert second.by_setting["close-set"]["map"] == pytest.approx((300.0 + sum(diffs) + 99.0) / 7)


def test_group_by_method_splits_mixed_folders() -> None:
    recs = [_rec("close-set", "a", 1.0), _rec("close-set", "a", 2.0, method="pretrained")]
    assert [g for g, _ in group_by_method("x", recs)] == ["x/uem", "x/pretrained"]
    assert [g for g, _ in group_by_method("x", recs[:1])] == ["x"]


def test_render_markdown_and_csv() -> None:
    ref = [_rec("open-set", "a", 60.0, acc=90.0, fr=20.0, clusterings=_clusterings((1, 7, 7)))]
    new = [_rec("open-set", "a", 63.5, acc=80.0, fr=10.0, clusterings=_clusterings((0, 9, 7)))]
    md = render_ablation([("ref", ref), ("new", new)])
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert lines[0].split("|")[1].strip() == "row"
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells[:7] == ["new", "1", "–", "–", "63.5", "80.0", "10.0"]
    assert cells[7:10] == ["– / – / 0.0", "– / – / 0%", "– / – / 8.0"]
    assert cells[11:] == ["+3.50", "1/1", "–"]  # one difference: too few for a p-value (as --stats)
    csv = render_ablation([("ref", ref), ("new", new)], fmt="csv")
    assert csv.splitlines()[0].startswith("row,runs,close,partial,open,open Acc,FR,merges")


def _copy_fixtures(dest: Path, shift: float, setting: str = "close-set") -> int:
    """The fixture uem records of ``setting`` with ``map_all + shift`` and a stage-1 clustering."""
    dest.mkdir()
    n = 0
    for path in sorted(FIXTURES.glob("*.json")):
        rec = json.loads(path.read_text())
        cfg = rec["config"]
        if (cfg["method"], cfg["dataset"], cfg["setting"], cfg["epochs_scale"]) != (
            "uem",
            "office31",
            setting,
            1.0,
        ):
            continue
        rec["metrics"]["map_all"] += shift
        rec["method_info"]["clusterings"] = [{"stage": 1, "merged": 2 if shift else 0, "k_a": 4, "k_b": 6}]
        (dest / path.name).write_text(json.dumps(rec))
        n += 1
    return n


def test_cli_ablation_end_to_end(tmp_path: Path) -> None:
    n = _copy_fixtures(tmp_path / "a", 0.0)
    assert n == 4 and len(load_records(tmp_path / "a")) == 4
    _copy_fixtures(tmp_path / "b", 2.5)
    out = tmp_path / "t.md"
    res = CliRunner().invoke(
        app,
        [
            "table",
            "--ablation",
            f"base={tmp_path / 'a'}",
            "--ablation",
            f"plus={tmp_path / 'b'}",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = {ln.split("|")[1].strip(): ln for ln in out.read_text().splitlines() if ln.startswith("| ")}
    plus = [c.strip() for c in rows["plus"].split("|")[1:-1]]
    base = [c.strip() for c in rows["base"].split("|")[1:-1]]
    # fixtures: uem close-set A->D 60, 64; D->W 89, 93 -> mean 76.5
    assert base[2] == "76.5" and plus[2] == "79.0"
    assert plus[7] == "2.0 / – / –" and base[8] == "0% / – / –" and plus[8] == "100% / – / –"
    assert plus[11:] == ["+2.50", "4/4", "–"]  # 4 differences < MIN_PAIRED: no p-value


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--stats"], "drop --stats"),
        (["--ablation", "x=/nonexistent/folder"], "does not exist"),
        (["--protocol", "open-set"], "it holds uem on office31"),
        (["--ablation", "nolabel"], "expected LABEL=DIR"),
        (["--ablation", "a=/elsewhere"], "given twice"),
        (["--cd-diagram", "/tmp/cd"], "drop --cd-diagram"),
        (["--runs", "/tmp"], "drop --runs"),
    ],
)
def test_cli_ablation_errors(tmp_path: Path, extra: list[str], needle: str) -> None:
    _copy_fixtures(tmp_path / "a", 0.0)
    res = CliRunner().invoke(app, ["table", "--ablation", f"a={tmp_path / 'a'}", *extra])
    assert res.exit_code == 2
    assert needle in res.output


def test_cli_ablation_checks_every_item_before_reading_a_folder(tmp_path: Path) -> None:
    _copy_fixtures(tmp_path / "a", 0.0)
    (tmp_path / "a" / "broken.json").write_text("{ not json")
    for late, needle in (("nolabel", "expected LABEL=DIR"), (f"b={tmp_path / 'none'}", "does not exist")):
        res = CliRunner().invoke(app, ["table", "--ablation", f"a={tmp_path / 'a'}", "--ablation", late])
        assert res.exit_code == 2 and needle in res.output and "broken.json" not in res.output
    res = CliRunner().invoke(app, ["table", "--ablation", f"a={tmp_path / 'a'}"])
    assert res.exit_code == 2 and "broken.json" in res.output  # the corrupt record is still named
