"""Result tables: golden files on committed fixture records, hand-computed statistics, marks, paper rows.

Fixture records (tests/fixtures/records, hand-chosen values, map_all / openset_accuracy):

* office31 open-set: uem A→D 70/90 (2024), 72/92 (2025); D→W 85/95, 89/97. pretrained A→D 60/80, 64/84;
  D→W 88/70 (2024 only).
* office31 close-set: uem (epochs_scale 1.0) A→D 60, 64; D→W 89, 93. uem (epochs_scale 0.5, 2024) A→D 55,
  D→W 91. pretrained A→D 50 (2024 only).
* digits close-set: uem MN→OD 97.3 (2024, image mode, small-cnn).

Set UPDATE_GOLDEN=1 to rewrite the golden files (then read them and check the numbers by hand).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from u2cdr_bench import tables as tables_mod
from u2cdr_bench.errors import UserError
from u2cdr_bench.records import load_records
from u2cdr_bench.tables import Stat, build_tables, load_paper_results, render_tables

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "records"
GOLDEN = HERE / "golden"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return load_records(FIXTURES)


def _table(records: list[dict], dataset: str, setting: str, **kw: object) -> tables_mod.Table:
    (table,) = build_tables(records, dataset=dataset, setting=setting, **kw)
    return table


def _row(table: tables_mod.Table, label: str) -> tables_mod.Row:
    (row,) = [r for r in table.rows if r.label == label]
    return row


# ---------------------------------------------------------------------------------------------- golden files

GOLDEN_CASES = {
    "table_markdown.md": {},
    "table_latex.tex": {"fmt": "latex"},
    "table_csv.csv": {"fmt": "csv"},
    "table_paper.md": {"paper": True},
    "table_paper.tex": {"paper": True, "fmt": "latex"},
    "table_paper.csv": {"paper": True, "fmt": "csv"},
    "table_p1.md": {"metric": "p@1", "setting": "close-set"},
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(records: list[dict], name: str) -> None:
    text = render_tables(records, **GOLDEN_CASES[name])
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- statistics


def test_cell_mean_and_population_std_by_hand(records: list[dict]) -> None:
    table = _table(records, "office31", "close-set")
    cell = _row(table, "uem [epochs_scale=1.0]").cells["A→D"]
    values = [60.0, 64.0]
    mean = sum(values) / 2
    pop_std = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
    assert cell == Stat(62.0, 2.0, 2)
    assert (cell.mean, cell.std) == (mean, pop_std)  # ddof=0, not the sample std 2.83
    assert cell.text() == "62.0±2.0"
    single = _row(table, "pretrained").cells["A→D"]
    assert single == Stat(50.0, None, 1) and single.text() == "50.0"  # one seed: mean alone


def test_avg_is_mean_of_pair_means_with_std_over_complete_seeds(records: list[dict]) -> None:
    table = _table(records, "office31", "open-set")
    uem = _row(table, "uem")
    # per-seed averages: 2024 (70+85)/2 = 77.5, 2025 (72+89)/2 = 80.5 -> 79.0 ± 1.5
    assert uem.cells["Avg"] == Stat(79.0, 1.5, 2)
    # Acc: 2024 (90+95)/2 = 92.5, 2025 (92+97)/2 = 94.5 -> 93.5 ± 1.0
    assert uem.acc["Avg"] == Stat(93.5, 1.0, 2)
    pre = _row(table, "pretrained")
    # mean of the per-pair means (62 + 88)/2 = 75, not the mean of the 3 runs (70.67); only seed 2024 has
    # every pair, so no std
    assert pre.cells["Avg"] == Stat(75.0, None, 1)
    assert pre.acc["Avg"] == Stat(76.0, None, 1)
    assert pre.cells["D→W"] == Stat(88.0, None, 1)


def test_avg_missing_when_a_pair_is_missing(records: list[dict]) -> None:
    table = _table(records, "office31", "close-set")
    pre = _row(table, "pretrained")
    assert pre.cells["D→W"] is None and pre.cells["Avg"] is None
    text = render_tables(records, dataset="office31", setting="close-set")
    assert "| pretrained             |         50.0 |            – |            – |" in text


def test_duplicate_record_counts_once(records: list[dict], tmp_path: Path) -> None:
    import shutil

    shutil.copytree(FIXTURES, tmp_path / "a")
    shutil.copytree(FIXTURES, tmp_path / "b" / "copy")
    doubled = load_records(tmp_path)
    assert len(doubled) == 2 * len(records)
    assert render_tables(doubled) == render_tables(records)


# ---------------------------------------------------------------------------------------------- marks


def test_best_bold_and_second_best_placement(records: list[dict]) -> None:
    table = _table(records, "office31", "close-set")
    marks = {r.label: r.marks for r in table.rows}
    assert marks["uem [epochs_scale=1.0]"] == {"A→D": "best", "D→W": "best", "Avg": "best"}
    # 91.0 vs 91.0±2.0 print the same value: both best; A→D 55.0 is second of three
    assert marks["uem [epochs_scale=0.5]"] == {"A→D": "second", "D→W": "best"}
    assert marks["pretrained"] == {}
    md = render_tables(records, dataset="office31", setting="close-set")
    assert "| uem [epochs_scale=0.5] |       *55.0* |     **91.0** |         73.0 |" in md
    tex = render_tables(records, dataset="office31", setting="close-set", fmt="latex")
    assert r"uem [epochs\_scale=0.5] & \underline{55.0} & \textbf{91.0} & 73.0 \\" in tex


def test_openset_cell_bold_by_map(records: list[dict]) -> None:
    table = _table(records, "office31", "open-set")
    # D→W: pretrained 88.0 mAP beats uem 87.0 although its Acc (70.0) is lower
    assert _row(table, "pretrained").marks == {"D→W": "best"}
    assert _row(table, "uem").marks == {"A→D": "best", "Avg": "best"}
    md = render_tables(records, dataset="office31", setting="open-set")
    assert "**88.0 / 70.0**" in md and "**71.0±1.0 / 91.0±1.0**" in md


def test_lower_is_better_metric(records: list[dict]) -> None:
    table = _table(records, "office31", "open-set", metric="false_rejection")
    assert not table.paired
    # A→D false rejection = 100 - Acc: uem (10, 8) -> 9.0; pretrained (20, 16) -> 18.0
    assert _row(table, "uem").cells["A→D"] == Stat(9.0, 1.0, 2)
    assert _row(table, "pretrained").cells["A→D"] == Stat(18.0, 2.0, 2)
    # D→W: pretrained 30.0 vs uem (5, 3) -> 4.0; Avg 24.0 vs 6.5: the lower value is best everywhere
    assert _row(table, "pretrained").cells["D→W"] == Stat(30.0, None, 1)
    assert _row(table, "uem").marks == {"A→D": "best", "D→W": "best", "Avg": "best"}
    assert _row(table, "pretrained").marks == {}


# ------------------------------------------------------------------------------------------ captions, order


def test_caption_mentions_seeds_std_and_uniform_setup(records: list[dict]) -> None:
    text = render_tables(records, dataset="office31", setting="open-set")
    first = text.splitlines()[0]
    assert first.startswith("**office31 — open-set** (shared-set mAP@All / open-set Acc, mean±std over seeds")
    assert "2024, 2025 (population std, ddof=0)" in first
    assert "features mode, effnet-lite0 backbone" in first
    digits = render_tables(records, dataset="digits").splitlines()[0]
    assert digits == "**digits — close-set** (mAP@All, seed 2024; image mode, small-cnn backbone)"


def test_rows_follow_registry_order(records: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables_mod, "_method_order", lambda: ["uem", "pretrained"])
    labels = [r.label for r in _table(records, "office31", "open-set").rows]
    assert labels == ["uem", "pretrained"]
    monkeypatch.setattr(tables_mod, "_method_order", lambda: [])  # registry unavailable: alphabetical
    labels = [r.label for r in _table(records, "office31", "open-set").rows]
    assert labels == ["pretrained", "uem"]


def test_columns_follow_dataset_pair_order(records: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    abbrev = {"webcam": "W", "dslr": "D", "amazon": "A"}
    spec = SimpleNamespace(
        all_pairs=lambda: [("dslr", "webcam"), ("webcam", "amazon"), ("amazon", "dslr")],
        abbrev=abbrev.__getitem__,
        paper_key="office31",
    )
    monkeypatch.setattr(tables_mod, "_dataset_spec", lambda name: spec if name == "office31" else None)
    assert _table(records, "office31", "open-set").columns == ["D→W", "A→D", "Avg"]
    monkeypatch.setattr(tables_mod, "_dataset_spec", lambda name: None)  # unregistered: sorted
    assert _table(records, "office31", "open-set").columns == ["A→D", "D→W", "Avg"]


def test_filters_and_user_errors(records: list[dict]) -> None:
    assert [t.setting for t in build_tables(records, dataset="office31")] == ["close-set", "open-set"]
    assert [t.dataset for t in build_tables(records, setting="close-set")] == ["digits", "office31"]
    only = build_tables(records, methods=["pretrained"])
    assert {r.method for t in only for r in t.rows} == {"pretrained"}
    with pytest.raises(
        UserError, match=r"No records for dataset 'pacs'; datasets present: digits, office31\."
    ):
        render_tables(records, dataset="pacs")
    with pytest.raises(UserError, match="settings present: close-set, open-set"):
        render_tables(records, setting="partial")
    with pytest.raises(UserError, match="methods present: pretrained, uem"):
        render_tables(records, methods=["cds"])
    with pytest.raises(UserError, match="Unknown table format 'html'; valid choices: markdown, latex, csv."):
        render_tables(records, fmt="html")
    with pytest.raises(UserError, match="No records to tabulate"):
        render_tables([])


def test_unknown_metric_lists_present_metrics(records: list[dict]) -> None:
    with pytest.raises(UserError) as info:
        render_tables(records, metric="p@50")
    assert str(info.value) == (
        "Metric 'p@50' is in none of the selected records; metrics present: false_rejection, map_all, "
        "map_all_standard, map_at_r, openset_accuracy, openset_binary_accuracy, p@1, p@15, p@5."
    )
    # openset_accuracy is null/absent in close-set records: only the open-set table is built
    (table,) = build_tables(records, metric="openset_accuracy")
    assert (table.dataset, table.setting, table.paired) == ("office31", "open-set", False)


def test_csv_long_format(records: list[dict]) -> None:
    df = pd.read_csv(io.StringIO(render_tables(records, fmt="csv")))
    assert list(df.columns) == [
        "dataset",
        "setting",
        "source",
        "method",
        "pair",
        "metric",
        "mean",
        "std",
        "n_seeds",
        "openset_accuracy_mean",
        "openset_accuracy_std",
    ]
    line = df[(df.setting == "open-set") & (df.method == "uem") & (df.pair == "D→W")].iloc[0]
    assert (line["mean"], line["std"], line["n_seeds"]) == (87.0, 2.0, 2)
    assert (line["openset_accuracy_mean"], line["openset_accuracy_std"]) == (96.0, 1.0)
    assert len(df) == 15  # present cells only (no row for the missing pretrained D→W / Avg)


# ---------------------------------------------------------------------------------------------- paper rows


def test_paper_rows_matched_by_label(records: list[dict]) -> None:
    table = _table(records, "office31", "open-set", paper=True)
    uem = _row(table, "UEM (paper)")
    assert uem.source == "paper" and uem.marks == {}
    assert uem.cells["A→D"] == Stat(70.6, 1.2, 3) and uem.acc["A→D"] == Stat(90.7, 1.9, 3)
    assert uem.cells["D→W"] == Stat(87.7, 1.7, 3)
    # only 2 of the paper's 6 pairs are shown: Avg recomputed over them, without std
    assert uem.cells["Avg"].mean == pytest.approx((70.6 + 87.7) / 2) and uem.cells["Avg"].std is None
    assert "paper rows: Table 7 (appendix), their Avg recomputed over the shown pairs" in table.details
    labels = [r.label for r in table.rows if r.source == "paper"]
    assert labels == [f"{m} (paper)" for m in ("CDS", "PCS", "DARL", "DN2A", "UCDIR", "CoDA", "DGDIR", "UEM")]
    digits = _table(records, "digits", "close-set", paper=True)
    assert "the paper has no table for this dataset/setting" in digits.details
    assert [r.source for r in digits.rows] == ["run"]


def test_paper_avg_is_reported_when_all_pairs_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A synthetic run over all six Office-31 pairs gets the paper's reported Avg (with std)."""
    monkeypatch.setattr(tables_mod, "_dataset_spec", lambda name: None)
    pairs = ["A→D", "A→W", "D→A", "D→W", "W→A", "W→D"]
    recs = [
        {
            "config_hash": f"{i:016x}",
            "created": "2026-01-01T00:00:00+00:00",
            "config": {
                "method": "uem",
                "dataset": "office31",
                "setting": "close-set",
                "query": p[0],
                "gallery": p[-1],
                "seed": 2024,
            },
            "task": {"query_abbrev": p[0], "gallery_abbrev": p[-1], "pair": p},
            "metrics": {"map_all": 50.0 + i},
        }
        for i, p in enumerate(pairs)
    ]
    table = _table(recs, "office31", "close-set", paper=True)
    assert _row(table, "UEM (paper)").cells["Avg"] == Stat(81.9, 0.5, 3)
    assert _row(table, "uem").cells["Avg"] == Stat(52.5, None, 1)
    assert table.details[-1] == "paper rows: Table 1"
    assert len(table.rows) == 1 + len(PAPER_METHODS)


def test_paper_rows_only_for_paper_metrics(records: list[dict]) -> None:
    table = _table(records, "office31", "close-set", paper=True, metric="p@1")
    assert "the paper reports no P@1" in table.details
    assert all(r.source == "run" for r in table.rows)
    acc = _table(records, "office31", "open-set", paper=True, metric="openset_accuracy")
    assert _row(acc, "UEM (paper)").cells["D→W"] == Stat(95.5, 3.2, 3)


# ---------------------------------------------------------------------------------------------- results.yaml

PAIRS = {
    "office31": ["A→D", "A→W", "D→A", "D→W", "W→A", "W→D"],
    "officehome": ["A→C", "A→P", "A→R", "C→A", "C→P", "C→R", "P→A", "P→C", "P→R", "R→A", "R→C", "R→P"],
    "domainnet": ["Qu→Cl", "Cl→Pa", "Pa→In", "In→Sk", "Sk→Re"],
}
PAPER_METHODS = ["CDS", "PCS", "DARL", "DN2A", "UCDIR", "CoDA", "DGDIR", "UEM"]


def _mean(v: object) -> float:
    return float(v[0]) if isinstance(v, list) else float(v)


def test_paper_results_structure() -> None:
    paper = load_paper_results()
    assert paper["meta"]["seeds"] == [2024, 2025, 2026]
    sources = set()
    for key, pairs in PAIRS.items():
        assert set(paper["tables"][key]) == {"close-set", "partial", "open-set"}
        for setting, spec in paper["tables"][key].items():
            sources.add(spec["source"].split(" (")[0])
            assert spec["pairs"] == pairs
            assert list(spec["rows"]) == PAPER_METHODS
            for row in spec["rows"].values():
                assert list(row) == pairs + ["Avg"]
                for cell in row.values():
                    if setting == "open-set":
                        assert set(cell) == {"map", "acc"}
                        parts = [cell["map"], cell["acc"]]
                    else:
                        parts = [cell]
                    for part in parts:
                        assert isinstance(part, float) or (len(part) == 2 and 0 <= part[1] < 10)
                        assert 0 < _mean(part) < 100
    assert sources == {f"Table {i}" for i in (1, 2, 3, 5, 6, 7, 8)}
    # Tables 3 and 8 print means only; Table 7 has std
    assert isinstance(paper["tables"]["domainnet"]["open-set"]["rows"]["UEM"]["Avg"]["map"], float)
    assert paper["tables"]["office31"]["open-set"]["rows"]["UEM"]["Avg"] == {
        "map": [77.4, 1.4],
        "acc": [92.5, 2.5],
    }
    load_paper_results()["meta"]["seeds"].append(1)  # a fresh copy each call
    assert load_paper_results()["meta"]["seeds"] == [2024, 2025, 2026]


def test_paper_averages_match_rows_except_coda_typo() -> None:
    paper = load_paper_results()
    exceptions = []
    for key, by_setting in paper["tables"].items():
        for setting, spec in by_setting.items():
            for method, row in spec["rows"].items():
                parts = ["map", "acc"] if setting == "open-set" else [None]
                for part in parts:

                    def get(cell: object, part: str | None = part) -> float:
                        return _mean(cell[part] if part else cell)

                    avg = sum(get(row[p]) for p in spec["pairs"]) / len(spec["pairs"])
                    if abs(avg - get(row["Avg"])) > 0.06:
                        exceptions.append((key, setting, method, part, avg, get(row["Avg"])))
    assert len(exceptions) == 1
    key, setting, method, part, avg, reported = exceptions[0]
    assert (key, setting, method, part, reported) == ("officehome", "close-set", "CoDA", None, 46.8)
    assert avg == pytest.approx(48.6, abs=0.05)


def test_paper_headline_numbers_and_ablation() -> None:
    paper = load_paper_results()
    t = paper["tables"]
    # text claims of paper-spec §6: margins of UEM over the best baseline
    assert _mean(t["office31"]["close-set"]["rows"]["UEM"]["Avg"]) - 79.3 == pytest.approx(2.6)
    assert _mean(t["officehome"]["partial"]["rows"]["UEM"]["Avg"]) == 46.0
    ablation = paper["ablations"]["rows"]
    assert list(ablation) == ["w/o P.M.", "w/o SEL", "w/o SPDA", "w/o SN2M", "Full UEM"]
    for key in PAIRS:
        full = ablation["Full UEM"][key]
        avg = t[key]["open-set"]["rows"]["UEM"]["Avg"]
        assert (full["map"], full["acc"]) == (_mean(avg["map"]), _mean(avg["acc"]))
        for variant in ("w/o P.M.", "w/o SEL", "w/o SPDA", "w/o SN2M"):
            assert ablation[variant][key]["map"] < full["map"]


def test_fmt1_rounds_halves_away_from_zero() -> None:
    from u2cdr_bench.tables import fmt1

    assert [fmt1(x) for x in (78.35, (66.7 + 90.0) / 2, 0.75, 51.24, 99.95, -0.04, 2.0)] == [
        "78.4",
        "78.4",
        "0.8",
        "51.2",
        "100.0",
        "0.0",
        "2.0",
    ]


def test_latex_escape() -> None:
    from u2cdr_bench.tables import latex_escape

    assert latex_escape("a_b & 5% → x±y — #1 {c}") == r"a\_b \& 5\% $\rightarrow$ x$\pm$y --- \#1 \{c\}"


# ------------------------------------------------------------------------------------------ head-to-head


def test_versus_by_hand(records: list[dict]) -> None:
    from u2cdr_bench.tables import Versus, versus

    got = versus(records, "uem", dataset="office31", setting="open-set", methods=["uem", "pretrained"])
    # open-set: A→D uem 71.0 vs 62.0 (win), D→W 87.0 vs 88.0 (loss); averages 79.0 vs 75.0
    assert got == [Versus("office31", "open-set", "pretrained", 79.0, 75.0, 1, 1, 2)]
    assert got[0].diff == 4.0
    ref = "uem [epochs_scale=1.0]"
    close = versus(records, ref, dataset="office31")
    # pretrained has A→D only: 62.0 vs 50.0; the 0.5 variant: A→D 62 vs 55 (win), D→W 91.0 vs 91.0 (tie)
    assert close == [
        Versus("office31", "close-set", "pretrained", 62.0, 50.0, 1, 0, 1),
        Versus("office31", "close-set", "uem [epochs_scale=0.5]", 76.5, 73.0, 1, 0, 2),
    ]
    # a row label as ref keeps its row when --methods lists other methods only
    assert versus(records, ref, dataset="office31", methods=["pretrained"]) == close[:1]
    # lower is better: false rejection A→D 9 vs 18, D→W 4 vs 30 -> two wins, 6.5 - 24.0 points
    (fr,) = versus(
        records, "uem", setting="open-set", metric="false_rejection", methods=["uem", "pretrained"]
    )
    assert (fr.wins, fr.losses, fr.diff) == (2, 0, -17.5)


def test_versus_markdown_csv_and_errors(records: list[dict]) -> None:
    from u2cdr_bench.tables import render_versus

    md = render_versus(records, "uem", setting="open-set", methods=["uem", "pretrained"])
    assert "| pretrained | +4.0 (1/2) |" in md
    csv = pd.read_csv(io.StringIO(render_versus(records, "uem", setting="open-set", fmt="csv")))
    assert csv[["setting", "method", "diff", "wins", "losses", "n_pairs"]].values.tolist() == [
        ["open-set", "pretrained", 4.0, 1, 1, 2]
    ]
    with pytest.raises(UserError, match="names 2 rows of the office31 close-set table"):
        render_versus(records, "uem", dataset="office31")
    with pytest.raises(UserError, match="No records for 'nope'.*rows present: pretrained"):
        render_versus(records, "nope")
    with pytest.raises(UserError, match="markdown or csv"):
        render_versus(records, "uem", setting="open-set", fmt="latex")


def test_binary_openset_accuracy_derived_for_older_records(records: list[dict]) -> None:
    from u2cdr_bench.tables import record_metric

    rec = {
        "metrics": {"openset_accuracy": 200 / 3, "false_rejection": 50.0},
        "counts": {"n_query": 5, "n_query_private": 3},
    }
    assert record_metric(rec, "openset_binary_accuracy") == pytest.approx(60.0)  # as test_metrics by hand
    rec["metrics"]["openset_binary_accuracy"] = 61.0  # recorded values win
    assert record_metric(rec, "openset_binary_accuracy") == 61.0
    assert math.isnan(record_metric({"metrics": {}, "counts": {}}, "openset_binary_accuracy"))
    table = _table(records, "office31", "open-set", metric="openset_binary_accuracy")
    # every fixture record was written without the key: A→D uem seeds have Acc 90 / 92, FR 10 / 8
    cell = _row(table, "uem").cells["A→D"]
    n, p = records_counts(records, "uem", "A→D")
    assert cell.mean == pytest.approx(
        sum((a * p + (100 - f) * (n - p)) / n for a, f in ((90, 10), (92, 8))) / 2
    )


def records_counts(records: list[dict], method: str, pair: str) -> tuple[int, int]:
    (counts,) = {
        (r["counts"]["n_query"], r["counts"]["n_query_private"])
        for r in records
        if r["config"]["method"] == method
        and r["task"]["pair"] == pair
        and r["config"]["setting"] == "open-set"
    }
    return counts
