"""The statistics behind ``table --stats``: pure functions over numpy arrays, no records, no formatting.

* :func:`bootstrap_mean_ci` — percentile interval of the grand mean of a (pairs × seeds) matrix under a
  two-way bootstrap that resamples pairs and seeds independently (with one seed: pairs only).
* :func:`average_ranks` — each method's mean rank over blocks (rank 1 = best, ties share the average rank).
* :func:`friedman` — Friedman's χ² over methods (``scipy.stats.friedmanchisquare``, tie-corrected) and the
  Iman–Davenport F derived from it (Demšar 2006, §3.2.2, Eqs. for :math:`\\chi^2_F` and :math:`F_F`).
* :func:`nemenyi` — the Nemenyi post-hoc p-values for every pair of methods
  (``scikit_posthocs.posthoc_nemenyi_friedman``) and the critical difference
  :math:`CD = q_\\alpha\\sqrt{k(k+1)/(6N)}` with :math:`q_\\alpha` the studentized range quantile over
  :math:`\\sqrt2` (Demšar 2006, §3.2.2).
* :func:`wilcoxon_signed_rank` — the two-sided Wilcoxon signed-rank test of paired differences
  (``scipy.stats.wilcoxon``, zero differences dropped) and its effect size, the matched-pairs rank-biserial
  correlation :math:`r = (T^+ - T^-)/(T^+ + T^-)` (Kerby 2014, "The simple difference formula").
* :func:`holm` — Holm's step-down adjustment of a family of p-values (``statsmodels``).

Assumptions (named here and in the README): the blocks of the Friedman test are the pairs of a table, each
method's value in a block is its mean over seeds (Demšar averages repeated runs on one data set); the
Wilcoxon test pairs single runs, one observation per (pair, seed) both methods have, so with several seeds
the observations of one pair are not independent (the test reads them as if they were).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

#: Bootstrap resamples and the generator seed of :func:`bootstrap_mean_ci` (fixed: tables are reproducible).
N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0
ALPHA = 0.05


def bootstrap_mean_ci(
    values: np.ndarray, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile ``level`` interval of ``values.mean()`` under a two-way bootstrap.

    Args:
        values: (P, S) matrix, pairs × seeds, no NaN.
        level: coverage of the interval (0.95: the 2.5 % and 97.5 % quantiles of the resampled means).
        n_boot: number of resamples B.
        seed: seed of ``numpy.random.default_rng``; the same seed and shape give the same draws, so the rows
            of one table are resampled alike.

    Each resample draws P pairs and, independently, S seeds with replacement; its statistic is the mean of
    the P·S cells they select, :math:`\\frac{1}{PS}\\sum_{a}\\sum_{c} v_{i_a j_c}
    = \\frac{1}{PS} m_p^\\top V m_s` with :math:`m_p, m_s` the multinomial draw counts. One seed (S = 1)
    resamples pairs only. ``scipy.stats.bootstrap`` resamples one axis of paired samples, not two crossed
    factors, hence the counts here.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.size == 0 or np.isnan(v).any():
        raise ValueError("bootstrap_mean_ci needs a non-empty (pairs, seeds) matrix without NaN")
    p, s = v.shape
    rng = np.random.default_rng(seed)
    m_p = rng.multinomial(p, np.full(p, 1.0 / p), size=n_boot).astype(np.float64)  # (B, P)
    m_s = rng.multinomial(s, np.full(s, 1.0 / s), size=n_boot).astype(np.float64)  # (B, S)
    means = np.einsum("bp,ps,bs->b", m_p, v, m_s) / (p * s)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def average_ranks(scores: np.ndarray, lower_is_better: bool = False) -> np.ndarray:
    """Mean rank of each method (column) over the blocks (rows) of ``scores`` (N, k); rank 1 = best.

    Within a block the best value gets rank 1 (highest, or lowest when ``lower_is_better``); tied values
    share the average of the ranks they span (``scipy.stats.rankdata(method="average")``).
    """
    a = np.asarray(scores, dtype=np.float64)
    ranks = sps.rankdata(a if lower_is_better else -a, axis=1, method="average")
    return ranks.mean(axis=0)


@dataclass(frozen=True)
class Friedman:
    """Friedman's test of k methods over N blocks.

    ``chi2`` is scipy's tie-corrected :math:`\\chi^2_F` with its p-value (χ² with k − 1 degrees of
    freedom); ``f`` the Iman–Davenport :math:`F_F = \\frac{(N-1)\\chi^2_F}{N(k-1)-\\chi^2_F}` with its p-value
    (F with k − 1 and (k − 1)(N − 1) degrees of freedom), which Demšar (2006) recommends as less conservative.
    """

    chi2: float
    p: float
    f: float
    f_p: float
    k: int
    n: int


def friedman(scores: np.ndarray) -> Friedman:
    """Friedman's test on ``scores`` (N blocks, k ≥ 3 methods); ``ValueError`` for fewer methods or blocks."""
    a = np.asarray(scores, dtype=np.float64)
    n, k = a.shape
    if k < 3 or n < 2:
        raise ValueError(f"Friedman's test needs at least 3 methods and 2 blocks, not {k} and {n}")
    res = sps.friedmanchisquare(*a.T)
    chi2, p = float(res.statistic), float(res.pvalue)
    f, f_p = iman_davenport(chi2, n, k)
    return Friedman(chi2, p, f, f_p, k, n)


def iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """Iman–Davenport :math:`F_F = \\frac{(N-1)\\chi^2_F}{N(k-1)-\\chi^2_F}` and its p-value under
    F(k − 1, (k − 1)(N − 1)) (Demšar 2006, §3.2.2); ``(inf, 0)`` when the blocks agree perfectly
    (:math:`\\chi^2_F = N(k-1)`), ``(nan, nan)`` for a NaN χ² (every block tied throughout)."""
    if math.isnan(chi2):
        return math.nan, math.nan
    denom = n * (k - 1) - chi2
    if denom <= 1e-12:
        return math.inf, 0.0
    f = (n - 1) * chi2 / denom
    return f, float(sps.f.sf(f, k - 1, (k - 1) * (n - 1)))


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """:math:`q_\\alpha` of the Nemenyi test for k methods: the studentized range quantile (k groups,
    infinite degrees of freedom) over :math:`\\sqrt 2` (Demšar 2006, Table 5a: 2.569 for k = 4, α = 0.05)."""
    return float(sps.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0))


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference :math:`q_\\alpha\\sqrt{k(k+1)/(6N)}` (k methods, N blocks; Demšar 2006)."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))


def nemenyi(scores: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Nemenyi post-hoc p-values of every pair of methods, a (k, k) frame indexed by ``labels``.

    ``scikit_posthocs.posthoc_nemenyi_friedman`` on the (N, k) ``scores``: two methods differ at level α
    when their average ranks differ by more than :func:`critical_difference`. The p-values do not depend on
    the rank direction.
    """
    import scikit_posthocs as sp

    a = np.asarray(scores, dtype=np.float64)
    out = sp.posthoc_nemenyi_friedman(a)
    out.index = labels
    out.columns = labels
    return out.astype(np.float64)


@dataclass(frozen=True)
class SignedRank:
    """Two-sided Wilcoxon signed-rank test of paired differences d = x − y.

    ``n``: differences given; ``n_nonzero``: those left after dropping zeros (the ``wilcox`` zero method);
    ``statistic``: scipy's, min(T⁺, T⁻); ``t_plus`` / ``t_minus``: rank sums of the positive / negative
    differences; ``r``: the matched-pairs rank-biserial correlation (T⁺ − T⁻)/(T⁺ + T⁻) in [−1, 1], +1 when
    every non-zero difference is positive (x higher). A NaN difference (a metric a run could not score, e.g.
    open-set Acc of a setting without private queries) is dropped like a zero. With no finite non-zero
    difference ``p`` and ``r`` are NaN.
    """

    n: int
    n_nonzero: int
    statistic: float
    p: float
    t_plus: float
    t_minus: float
    r: float


def wilcoxon_signed_rank(d: np.ndarray) -> SignedRank:
    """Wilcoxon signed-rank test of ``d`` (1-D paired differences) and its rank-biserial effect size.

    ``scipy.stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto")``: the exact
    null distribution for small samples without ties, the normal approximation otherwise (scipy's rule).
    """
    d = np.asarray(d, dtype=np.float64).ravel()
    nz = d[np.isfinite(d) & (d != 0.0)]
    if nz.size == 0:
        return SignedRank(int(d.size), 0, math.nan, math.nan, 0.0, 0.0, math.nan)
    ranks = sps.rankdata(np.abs(nz), method="average")
    t_plus, t_minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    res = sps.wilcoxon(nz, zero_method="wilcox", alternative="two-sided", method="auto")
    r = (t_plus - t_minus) / (t_plus + t_minus)
    return SignedRank(int(d.size), int(nz.size), float(res.statistic), float(res.pvalue), t_plus, t_minus, r)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (``statsmodels.stats.multitest.multipletests(method="holm")``).

    NaN entries (tests that could not run) stay NaN and are not counted in the family.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return [float(x) for x in out]
