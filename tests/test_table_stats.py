"""``table --stats``: each statistic against a published or hand-computed example, then the command itself.

Published example: Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7,
§3.2.2 and Table 6 (AUC of four C4.5 variants on 14 data sets): average ranks 3.143, 2.000, 2.893, 1.964;
χ²_F = 9.28, F_F = 3.69; Nemenyi q₀.₀₅ = 2.569, CD = 1.25 (q₀.₁₀ = 2.291, CD = 1.12); no pair differs at
0.05, and at 0.10 C4.5 is worse than C4.5+m and C4.5+m+cf; Holm on p = 0.016, 0.019, 0.607 rejects the
first two. Table 6 prints AUCs rounded to three decimals; on *voting* C4.5+cf (0.975) ranks above
C4.5+m+cf (0.975), so the matrix below gives C4.5+cf 0.97501 to keep the paper's ranks.

Synthetic records (dataset ``toy``, close-set, pairs A→B, A→C, B→A, B→C, seeds 2024 / 2025), cell means:

=======  =====  =====  =====  =====
row      A→B    A→C    B→A    B→C
=======  =====  =====  =====  =====
alpha    80     75     60     90      seed 2024 = mean + o, 2025 = mean − o, o = 1, 0.5, 1.25, 2
beta     70     72     65     80      both seeds equal
gamma    60     65     50     70      both seeds equal
=======  =====  =====  =====  =====

By hand: ranks alpha 1.25, beta 1.75, gamma 3 (no ties); χ²_F = 12·4/(3·4)·(1.25² + 1.75² + 3² − 12) = 6.5,
p = e^(−3.25); F_F = 3·6.5/(8 − 6.5) = 13 on (2, 6) d.f., p = (1 + 2·13/6)^(−3); CD = 2.343·√(12/24).
alpha − beta over (pair, seed): 11, 9, 3.5, 2.5, −3.75, −6.25, 12, 8 → ranks of |d| 7, 6, 2, 1, 3, 4, 8, 5,
T⁺ = 29, T⁻ = 7, r = 22/36; exact two-sided p = 2·#{subsets of 1..8 with sum ≤ 7}/2⁸ = 2·19/256.
alpha − gamma: all 8 positive, p = 2/256, r = 1. Holm over the two: 2·2/256 and max(2·19/256 · 1, ...).
alpha's Avg 76.25; per-seed averages 77.4375 and 75.0625, population std 1.1875.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from u2cdr_bench.cli import main
from u2cdr_bench.records import config_hash, load_records
from u2cdr_bench.tables import build_stats, render_tables
from u2cdr_bench.tables import stats as st

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tests" / "fixtures" / "records" / "012cf7f7d8879099.json"

DEMSAR_AUC = np.array(
    [
        [0.763, 0.768, 0.771, 0.798],
        [0.599, 0.591, 0.590, 0.569],
        [0.954, 0.971, 0.968, 0.967],
        [0.628, 0.661, 0.654, 0.657],
        [0.882, 0.888, 0.886, 0.898],
        [0.936, 0.931, 0.916, 0.931],
        [0.661, 0.668, 0.609, 0.685],
        [0.583, 0.583, 0.563, 0.625],
        [0.775, 0.838, 0.866, 0.875],
        [1.000, 1.000, 1.000, 1.000],
        [0.940, 0.962, 0.965, 0.962],
        [0.619, 0.666, 0.614, 0.669],
        [0.972, 0.981, 0.97501, 0.975],
        [0.957, 0.978, 0.946, 0.970],
    ]
)
DEMSAR_NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]

PAIRS = ["A→B", "A→C", "B→A", "B→C"]
MEANS = {
    "alpha": [80.0, 75.0, 60.0, 90.0],
    "beta": [70.0, 72.0, 65.0, 80.0],
    "gamma": [60.0, 65.0, 50.0, 70.0],
}
OFFSETS = {"alpha": [1.0, 0.5, 1.25, 2.0], "beta": [0.0] * 4, "gamma": [0.0] * 4}


# ---------------------------------------------------------------------------------- the published example


def test_average_ranks_demsar_table6() -> None:
    ranks = st.average_ranks(DEMSAR_AUC)
    assert ranks == pytest.approx([3.143, 2.000, 2.893, 1.964], abs=5e-4)
    # rank sums by hand from Table 6's parentheses: 44, 28, 40.5, 27.5
    assert ranks * 14 == pytest.approx([44.0, 28.0, 40.5, 27.5])


def test_average_ranks_ties_and_direction() -> None:
    scores = np.array([[3.0, 3.0, 1.0], [1.0, 2.0, 2.0]])
    assert st.average_ranks(scores) == pytest.approx([(1.5 + 3) / 2, (1.5 + 1.5) / 2, (3 + 1.5) / 2])
    assert st.average_ranks(scores, lower_is_better=True) == pytest.approx(
        [(2.5 + 1) / 2, 2.5, (1 + 2.5) / 2]
    )


def test_friedman_and_iman_davenport_demsar() -> None:
    ranks = np.array([3.143, 2.000, 2.893, 1.964])
    n, k = 14, 4
    chi2 = 12 * n / (k * (k + 1)) * ((ranks**2).sum() - k * (k + 1) ** 2 / 4)  # Demšar's formula, no ties
    assert chi2 == pytest.approx(9.28, abs=5e-3)
    f, f_p = st.iman_davenport(chi2, n, k)
    assert f == pytest.approx(3.69, abs=5e-3)
    assert sps.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=5e-3) and f_p < 0.05
    # scipy's χ² corrects for ties (mushroom: a 4-way tie, iris / lung cancer / primary tumor: 2-way):
    # χ² = (12 Σ R_j² − 3N²k(k+1)²) / (Nk(k+1) − Σ(t³ − t)/(k − 1)), R_j the rank sums
    res = st.friedman(DEMSAR_AUC)
    sums = np.array([44.0, 28.0, 40.5, 27.5])
    ties = (4**3 - 4) + 3 * (2**3 - 2)
    by_hand = (12 * (sums**2).sum() - 3 * n**2 * k * (k + 1) ** 2) / (n * k * (k + 1) - ties / (k - 1))
    assert res.chi2 == pytest.approx(by_hand)
    assert res.p == pytest.approx(sps.chi2.sf(by_hand, 3))
    assert (res.k, res.n) == (4, 14)
    assert (res.f, res.f_p) == pytest.approx(st.iman_davenport(by_hand, n, k))


def test_nemenyi_critical_difference_demsar() -> None:
    assert st.nemenyi_q(4) == pytest.approx(2.569, abs=5e-4)
    assert st.nemenyi_q(4, 0.10) == pytest.approx(2.291, abs=5e-4)
    assert st.nemenyi_q(3) == pytest.approx(2.343, abs=1e-3)  # Table 5(a) truncates 2.3437
    assert st.critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)
    assert st.critical_difference(4, 14, 0.10) == pytest.approx(1.12, abs=5e-3)


def test_nemenyi_pvalues_demsar() -> None:
    p = st.nemenyi(DEMSAR_AUC, DEMSAR_NAMES)
    assert list(p.index) == DEMSAR_NAMES and np.allclose(p.to_numpy(), p.to_numpy().T)
    off = p.to_numpy()[~np.eye(4, dtype=bool)]
    assert (off > 0.05).all()  # "the post-hoc test is not powerful enough to detect any difference"
    worse = {b for b in DEMSAR_NAMES if p.loc["C4.5", b] < 0.10}
    assert worse == {"C4.5+m", "C4.5+m+cf"}  # at p = 0.10
    # a pair's p by hand: the studentized range (k, ∞) beyond √2·|ΔR| / √(k(k+1)/(6N))
    ranks = st.average_ranks(DEMSAR_AUC)
    q = abs(ranks[0] - ranks[3]) / math.sqrt(4 * 5 / (6 * 14)) * math.sqrt(2)
    assert p.loc["C4.5", "C4.5+m+cf"] == pytest.approx(sps.studentized_range.sf(q, 4, np.inf), rel=1e-3)


def test_holm_demsar_and_nan() -> None:
    assert st.holm([0.016, 0.019, 0.607]) == pytest.approx([0.048, 0.048, 0.607])
    out = st.holm([0.01, math.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)


# ---------------------------------------------------------------------------------- Wilcoxon, bootstrap


def test_wilcoxon_signed_rank_by_hand_and_scipy() -> None:
    d = np.array([11.0, 9.0, 3.5, 2.5, -3.75, -6.25, 12.0, 8.0, 0.0])  # the zero is dropped
    res = st.wilcoxon_signed_rank(d)
    assert (res.n, res.n_nonzero) == (9, 8)
    assert (res.t_plus, res.t_minus, res.statistic) == (29.0, 7.0, 7.0)
    assert res.p == pytest.approx(2 * 19 / 256)
    assert res.p == pytest.approx(sps.wilcoxon(d[d != 0]).pvalue)
    assert res.r == pytest.approx(22 / 36)
    flipped = st.wilcoxon_signed_rank(-d)
    assert flipped.r == pytest.approx(-22 / 36) and flipped.p == pytest.approx(res.p)
    none = st.wilcoxon_signed_rank(np.zeros(4))
    assert none.n_nonzero == 0 and math.isnan(none.p) and math.isnan(none.r)
    # NaN differences (an unscored metric) are dropped like zeros, not ranked
    with_nan = st.wilcoxon_signed_rank(np.append(d, [math.nan, math.nan]))
    assert (with_nan.n, with_nan.n_nonzero, with_nan.t_plus, with_nan.t_minus) == (11, 8, 29.0, 7.0)
    assert with_nan.p == pytest.approx(res.p)
    all_nan = st.wilcoxon_signed_rank(np.full(3, math.nan))
    assert all_nan.n_nonzero == 0 and math.isnan(all_nan.p) and math.isnan(all_nan.r)


def test_bootstrap_by_hand_and_seeded() -> None:
    # two pairs, one seed: resampled means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    lo, hi = st.bootstrap_mean_ci(np.array([[0.0], [1.0]]))
    assert (lo, hi) == (0.0, 1.0)
    assert st.bootstrap_mean_ci(np.full((3, 2), 7.5)) == (7.5, 7.5)
    v = np.random.default_rng(3).normal(50.0, 5.0, size=(6, 3))
    a, b = st.bootstrap_mean_ci(v), st.bootstrap_mean_ci(v)
    assert a == b  # same seed, same draws
    assert a != st.bootstrap_mean_ci(v, seed=1)
    assert a[0] < v.mean() < a[1] and v.min() <= a[0] and a[1] <= v.max()
    narrow = st.bootstrap_mean_ci(v, level=0.5)
    assert a[0] < narrow[0] < narrow[1] < a[1]
    with pytest.raises(ValueError):
        st.bootstrap_mean_ci(np.array([[1.0, math.nan]]))


# ---------------------------------------------------------------------------------- records and the CLI


def _write_records(folder: Path, seeds: tuple[int, ...] = (2024, 2025), pairs: list[str] = PAIRS) -> Path:
    template = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    for method, means in MEANS.items():
        for i, pair in enumerate(pairs):
            for seed in seeds:
                sign = 1.0 if seed == 2024 else -1.0
                q, g = pair.split("→")
                rec = copy.deepcopy(template)
                rec["config"] = {
                    "method": method,
                    "dataset": "toy",
                    "setting": "close-set",
                    "query": q,
                    "gallery": g,
                    "seed": seed,
                }
                rec["config_hash"] = config_hash(rec["config"])
                rec["task"] = {"query_abbrev": q, "gallery_abbrev": g, "pair": pair}
                rec["metrics"] = {"map_all": means[i] + sign * OFFSETS[method][i], "p@1": 50.0}
                (folder / f"{rec['config_hash']}.json").write_text(json.dumps(rec), encoding="utf-8")
    return folder


def _stats_rows(text: str) -> dict[str, list[str]]:
    """The statistics table's rows (after the ``: statistics**`` title), by label."""
    block = text.split(": statistics**", 1)[1]
    rows = {}
    for line in block.splitlines():
        if line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_table_stats_values(tmp_path: Path) -> None:
    (ts,) = build_stats(load_records(_write_records(tmp_path / "runs")), ref="alpha")
    rows = {r.label: r for r in ts.rows}
    assert ts.seeds == [2024, 2025] and ts.ranked == ["alpha", "beta", "gamma"]
    assert ts.ranks == pytest.approx({"alpha": 1.25, "beta": 1.75, "gamma": 3.0})
    assert ts.friedman is not None and ts.friedman.chi2 == pytest.approx(6.5)
    assert ts.friedman.p == pytest.approx(math.exp(-3.25))
    assert ts.friedman.f == pytest.approx(13.0) and ts.friedman.f_p == pytest.approx((1 + 26 / 6) ** -3)
    assert ts.cd == pytest.approx(st.nemenyi_q(3) * math.sqrt(0.5))
    alpha = rows["alpha"]
    assert alpha.is_ref and alpha.paired is None
    assert alpha.avg.mean == pytest.approx(76.25) and alpha.avg.std == pytest.approx(1.1875)
    assert alpha.ci_seeds == 2 and alpha.ci[0] < 76.25 < alpha.ci[1]
    assert 58.75 <= alpha.ci[0] and alpha.ci[1] <= 92.0
    beta, gamma = rows["beta"].paired, rows["gamma"].paired
    assert (beta.n, beta.wins, beta.losses, beta.diff) == (8, 6, 2, pytest.approx(4.5))
    assert beta.test.p == pytest.approx(38 / 256) and beta.test.r == pytest.approx(22 / 36)
    assert (gamma.n, gamma.wins, gamma.diff) == (8, 8, pytest.approx(15.0))
    assert gamma.test.p == pytest.approx(2 / 256) and gamma.test.r == 1.0
    assert gamma.p_holm == pytest.approx(4 / 256) and beta.p_holm == pytest.approx(38 / 256)


def test_cli_stats_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _write_records(tmp_path / "runs")
    assert main(["table", "--runs", str(runs), "--stats", "--versus", "alpha"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**toy — close-set** (mAP@All, mean±std over seeds 2024, 2025")
    assert "**toy — close-set: statistics** (mAP@All; seeds 2024, 2025: std is the population std" in out
    rows = _stats_rows(out)
    assert rows["alpha"][:2] == ["76.3", "1.2"] and rows["alpha"][3:5] == ["1.25", "reference"]
    assert rows["beta"][:2] == ["71.8", "0.0"]
    assert rows["beta"][3:] == ["1.75", "+4.5", "6/8", "0.148", "0.148", "+0.61"]
    assert rows["gamma"][3:] == ["3.00", "+15.0", "8/8", "0.008", "0.016", "+1.00"]
    assert "χ²_F = 6.50 (tie-corrected, 2 d.f.), p = 0.039; Iman–Davenport F_F = 13.00, p = 0.007." in out
    assert f"critical difference {st.nemenyi_q(3) * math.sqrt(0.5):.2f} ranks" in out
    # Nemenyi: |ΔR| alpha–gamma = 1.75 > CD = 1.66; alpha–beta 0.5 and beta–gamma 1.25 are below it
    assert "alpha differs from gamma (1 of 3 row pairs differ)." in out


def test_cli_stats_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _write_records(tmp_path / "runs")
    assert main(["table", "--runs", str(runs), "--stats", "--versus", "alpha", "--format", "csv"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("method")
    assert list(df.index) == ["alpha", "beta", "gamma"]
    assert df.loc["alpha", "avg"] == 76.25 and df.loc["alpha", "std"] == 1.1875
    assert df.loc["beta", "p"] == pytest.approx(38 / 256, rel=1e-5)
    assert df.loc["gamma", "p_holm"] == pytest.approx(4 / 256, rel=1e-5)
    assert df.loc["beta", "rank_biserial"] == pytest.approx(0.6111)
    assert (df["friedman_chi2"] == 6.5).all() and (df["iman_davenport_f"] == 13.0).all()
    assert df.loc["gamma", "rank"] == 3.0 and math.isnan(df.loc["alpha", "p"])


def test_one_seed_and_too_few_blocks_are_said(tmp_path: Path) -> None:
    one = load_records(_write_records(tmp_path / "one", seeds=(2024,)))
    text = render_tables(one, stats=True, ref="alpha")
    assert "one seed (2024): no std over seeds (–)" in text
    rows = _stats_rows(text)
    assert rows["alpha"][1] == "–"
    assert rows["beta"][5:8] == ["3/4", "–", "–"]  # 4 differences: no p-value
    assert "No Wilcoxon p-value for beta, gamma: fewer than 6 runs differ from alpha" in text
    assert "Friedman test over these rows (blocks: the 4 pairs)" in text
    few = load_records(_write_records(tmp_path / "few", pairs=PAIRS[:2]))
    text = render_tables(few, stats=True)
    assert "No Friedman test: it needs at least 3 rows with every pair and 3 pairs (3 and 2 here)." in text
    assert "Friedman test over" not in text
    (ts,) = build_stats(few)
    assert (
        ts.friedman is None
        and ts.cd is None
        and ts.ranks == pytest.approx({"alpha": 1, "beta": 2, "gamma": 3})
    )


def test_cd_diagram_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from matplotlib.image import imread

    runs = _write_records(tmp_path / "runs")
    out = tmp_path / "cd"
    assert main(["table", "--runs", str(runs), "--stats", "--cd-diagram", str(out)]) == 0
    assert f"wrote {out / 'toy-close-set.png'}" in capsys.readouterr().err.replace("\n", "")
    img = imread(out / "toy-close-set.png")
    assert img.shape == (230, 800, 4)  # 8 × (1.8 + 0.25·2) inches at 100 dpi
    assert img[..., :3].min() < 0.2 and img[..., :3].max() == 1.0  # ink on a white background


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (
            ["--stats", "--versus", "nosuch"],
            "No records for 'nosuch' to compare against; rows present: alpha, beta, gamma.",
        ),
        (["--cd-diagram", "FILE"], "is a file; pass a folder"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, capsys, extra: list[str], fragment: str) -> None:
    runs = _write_records(tmp_path / "runs")
    (tmp_path / "FILE").write_text("x")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
    assert main(["table", "--runs", str(runs), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err and "Traceback" not in err


# ---------------------------------------------------------------------------------- results pages


def _make_tables():
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "benchmarks" / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_tables"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_results_page_statistics_section(tmp_path: Path) -> None:
    mt = _make_tables()
    runs = _write_records(tmp_path / "results" / "toy")
    records = load_records(runs)
    assert mt.n_seeds(records) == 2
    grid = mt.Grid("toy", "Toy", "intro")
    section = "\n".join(mt.stats_section(grid, runs, records, ["alpha", "beta", "gamma"]))
    assert section.startswith("## Statistics (mAP@All; open-set: shared-set mAP@All)")
    assert "**toy — close-set: statistics**" in section
    assert "![critical-difference diagram, close-set](toy-cd/toy-close-set.png)" in section
    one = load_records(_write_records(tmp_path / "one", seeds=(2024,)))
    assert mt.n_seeds(one) == 1  # one seed: grid_markdown adds no statistics section
