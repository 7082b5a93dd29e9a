"""The pooled linear model behind study.stats, as plain data: each factor's levels as contrasts
of cell means under one error estimate (`Comparison`), their estimates (`estimate`: differences
from the baseline, standard errors, an F-test, simultaneous critical values and the null mean of
the largest difference), each level's divergence rate (`divergence`) and level means
(`level_rows`).

Cells are design points in a fixed design (ofat, grid: `accuracy ~ C(design_point)` over the
converged trials, the error pooled over every replicated point) and a factor's level bins in a
sampled one (optuna, hydra: a one-way model per factor). Simultaneous critical values are the
quantiles of max |t| over a factor's comparisons, drawn by Monte Carlo from their correlation
(OFAT's comparisons share the baseline point): Dunnett's method, for any contrasts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from study.analysis import (
    ACCURACY,
    converged,
    finished,
    level_order,
    level_slice,
    pooled_std,
)
from study.spec import StudySpec

N_DRAWS = 4000  # Monte Carlo draws: simultaneous critical values and null means
CONFIDENCE = 0.95  # of the level intervals and divergence-rate intervals


@dataclass
class Comparison:
    """One factor's levels as weighted means of cell means, under one error estimate."""

    factor: str
    levels: list[Any]  # design order; levels without a converged trial are left out
    reference: Any  # the baseline level: what every other level is compared with
    cells: list[str]  # cell ids: design points (fixed designs) or `factor=bin`
    weights: np.ndarray  # (levels, cells): each level mean as a weighted mean of cell means
    n: np.ndarray  # converged trials per cell
    mean: np.ndarray  # mean accuracy per cell
    s: float  # error standard deviation (NaN without replicates)
    df: int  # its degrees of freedom
    error_id: str  # comparisons with the same id share the error estimate
    ss_between: float  # sums of squares of the factor's slice: between its levels
    ss_total: float  # and in all

    @property
    def contrasts(self) -> np.ndarray:
        """(levels - 1, cells): each non-reference level minus the reference."""
        ref = self.levels.index(self.reference)
        return np.delete(self.weights, ref, axis=0) - self.weights[ref]

    @property
    def others(self) -> list[Any]:
        return [level for level in self.levels if level != self.reference]


def studied(spec: StudySpec) -> list[str]:
    """The factors the study compares levels of: varied, over more than one level (a hydra
    study marks every factor varied, whether its jobs changed it or not)."""
    return [f for f in spec.varied if len(spec.factors[f].levels) > 1]


def factor_slices(trials: pd.DataFrame, spec: StudySpec) -> dict[str, pd.DataFrame]:
    """Each studied factor's slice of the trials (every state), with its `level` column."""
    return {factor: level_slice(trials, factor, spec) for factor in studied(spec)}


def comparisons(trials: pd.DataFrame, spec: StudySpec, slices: dict[str, pd.DataFrame]
                ) -> dict[str, Comparison]:
    """Each studied factor's comparison, from the converged trials; a factor with fewer than two
    levels with converged trials gets none."""
    pooled = spec.kind.fixed
    if pooled:
        by_point = converged(trials).groupby("design_point")[ACCURACY]
        point_stats = by_point.agg(["count", "mean"])
        s, df = pooled_std(by_point)
    result = {}
    for factor in slices:
        part = converged(slices[factor])
        present = level_order(spec, factor, list(part["level"].unique()))
        if len(present) < 2:
            continue
        reference = _reference(spec, factor, present)
        if pooled:
            points = {level: sorted(part.loc[part["level"] == level, "design_point"].unique())
                      for level in present}
            cells = sorted({p for ps in points.values() for p in ps})
            stats, error = point_stats.loc[cells], (s, df, "pooled")
        else:
            points = {level: [f"{factor}={level}"] for level in present}
            cells = [f"{factor}={level}" for level in present]
            groups = part.assign(cell=[f"{factor}={v}" for v in part["level"]]).groupby(
                "cell")[ACCURACY]
            stats, error = groups.agg(["count", "mean"]).loc[cells], (*pooled_std(groups), factor)
        weights = np.array([[1 / len(points[level]) if c in points[level] else 0.0
                            for c in cells] for level in present])
        values = part[ACCURACY].astype(float)
        by_level = values.groupby(part["level"])
        between = float((by_level.count() * (by_level.mean() - values.mean()) ** 2).sum())
        result[factor] = Comparison(factor, present, reference, cells, weights,
                                    stats["count"].to_numpy(float), stats["mean"].to_numpy(float),
                                    *error, between, float(((values - values.mean()) ** 2).sum()))
    return result


def _reference(spec: StudySpec, factor: str, present: list[Any]) -> Any:
    """The level every other one is compared with: the baseline, or where it has no trials (a
    grid without it, bins of sampled values) the first level in design order."""
    baseline = spec.factors[factor].baseline
    return baseline if baseline in present else present[0]


@functools.lru_cache(maxsize=256)
def _null_draws(cov_key: tuple, df: int) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo draws of max_v |z_v| (z ~ N(0, cov), the contrasts in units of the error
    std) and of max_v |t_v| (the same standardised, with the error std estimated on df > 0)."""
    cov = np.array(cov_key)
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=N_DRAWS, method="cholesky")
    scale = np.sqrt(rng.chisquare(df, N_DRAWS) / df)
    return np.abs(z).max(axis=1), np.abs(z / np.sqrt(np.diag(cov))).max(axis=1) / scale


def _key(cov: np.ndarray) -> tuple:
    return tuple(tuple(row) for row in np.round(cov, 10))


def null_max_z(comp: Comparison) -> float:
    """What the largest |difference from the baseline| averages when no level differs, in units
    of the error std (`estimate`'s null_mean is this times s)."""
    c = comp.contrasts
    return float(_null_draws(_key((c / comp.n) @ c.T), max(comp.df, 1))[0].mean())


@dataclass
class FactorEstimates:
    differences: np.ndarray  # each non-reference level minus the reference
    se: np.ndarray  # their standard errors
    p_each: np.ndarray  # simultaneous (Dunnett-adjusted) p per level
    q95: float  # simultaneous critical values of max |t|
    q90: float
    null_mean: float  # mean of max |difference| when no level differs
    p: float  # F-test of all differences = 0


def estimate(comp: Comparison) -> FactorEstimates:
    c = comp.contrasts
    d = c @ comp.mean
    cov_unit = (c / comp.n) @ c.T
    if comp.df == 0:
        nan = np.full(len(d), np.nan)
        return FactorEstimates(d, nan, nan, np.nan, np.nan, np.nan, np.nan)
    se = comp.s * np.sqrt(np.diag(cov_unit))
    max_t = _null_draws(_key(cov_unit), comp.df)[1]
    with np.errstate(divide="ignore", invalid="ignore"):  # no noise at all (s = 0): t is inf
        t = np.abs(d) / se
        wald = d @ np.linalg.pinv(cov_unit) @ d / comp.s ** 2 / len(d)
    return FactorEstimates(
        d, se, p_each=np.array([(max_t >= value).mean() for value in t]),
        q95=float(np.quantile(max_t, 0.95)), q90=float(np.quantile(max_t, 0.90)),
        null_mean=comp.s * null_max_z(comp), p=float(sps.f.sf(wald, len(d), comp.df)))


def divergence(spec: StudySpec, slices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (factor, level) of the finished trials: diverged of finished, the rate with a 95%
    Wilson interval, and Fisher's exact p against the factor's baseline level."""
    rows = []
    for factor, part in slices.items():
        part = finished(part)
        counts = part.groupby("level", sort=False)["outcome"].agg(
            diverged=lambda o: int((o == "diverged").sum()), trials="count")
        present = level_order(spec, factor, list(counts.index))
        if not present:
            continue
        reference = _reference(spec, factor, present)
        for level in present:
            k, n = counts.loc[level]
            low, high = proportion_confint(k, n, alpha=1 - CONFIDENCE, method="wilson")
            p = np.nan
            if level != reference and counts["diverged"].sum() > 0:
                kb, nb = counts.loc[reference]
                p = sps.fisher_exact([[k, n - k], [kb, nb - kb]]).pvalue
            rows.append({"factor": factor, "level": level, "diverged": k, "trials": n,
                         "rate": k / n, "rate_low": low, "rate_high": high, "fisher_p": p,
                         "baseline": level == reference})
    return pd.DataFrame(rows, columns=["factor", "level", "diverged", "trials", "rate",
                                       "rate_low", "rate_high", "fisher_p", "baseline"])


def omega_squared(comp: Comparison) -> float:
    """Omega-squared of the factor's slice with the pooled error variance, clipped at zero:
    eta-squared less what it averages when the levels do not differ."""
    if comp.df == 0 or comp.ss_total == 0:
        return float("nan")
    k, mse = len(comp.levels), comp.s ** 2
    return max(0.0, (comp.ss_between - (k - 1) * mse) / (comp.ss_total + mse))


LEVEL_COLUMNS = ["factor", "level", "n", "mean", "ci_low", "ci_high"]


def level_rows(comp: Comparison) -> list[dict]:
    """Each level's mean accuracy with a 95% t-interval from the comparison's error."""
    means = comp.weights @ comp.mean
    se = comp.s * np.sqrt((comp.weights ** 2 / comp.n).sum(axis=1))
    half = sps.t.ppf(0.5 + CONFIDENCE / 2, comp.df) * se if comp.df else np.full(len(se), np.nan)
    counts = comp.weights.astype(bool) @ comp.n
    return [{"factor": comp.factor, "level": level, "n": int(n), "mean": m, "ci_low": m - h,
             "ci_high": m + h} for level, n, m, h in zip(comp.levels, counts, means, half,
                                                         strict=True)]
