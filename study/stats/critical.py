"""Simultaneous critical values of a factor's comparisons with its reference level.

Under one error variance for all cells (the pooled screening): Dunnett's method for any
contrasts. The quantiles of max |t| over the comparisons and the single-step adjusted p-values
come from the multivariate t distribution of the comparisons (their correlation: OFAT's share
the baseline point), integrated by scipy's quasi-Monte Carlo (Genz); the mean of max |z| when no
level differs (the head start the selection-corrected effect takes off) by Monte Carlo. The
quantiles are cached per correlation, degrees of freedom and level, the head start per
covariance.

With each cell's own variance (levels may differ in noise): the Behrens-Fisher (fiducial) law
of the largest standardized contrast, each cell mean's error its standard error times an
independent Student t on the cell's df (`fiducial_max`), by seeded Monte Carlo. Its intervals
are conservative for any variances (Robinson 1976), where Welch's t is not with few seeds: at 3
seeds against 6 and a level three times as noisy, Welch's 1% test rejects 2.4% of the time.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import optimize
from scipy import stats as sps

N_DRAWS = 4000  # Monte Carlo draws per correlation matrix, for the mean of max |z|
QUANTILE_POINTS = 25_000  # quasi-Monte Carlo points per comparison: quantiles within 0.002
P_VALUE_POINTS = 500  # the same for adjusted p-values: within 2e-4 (two digits are shown)
FIDUCIAL_DRAWS = 20_000  # Monte Carlo draws of the Behrens-Fisher law: p-values to 1 / 20,000
PLANNING_DRAWS = 4_000  # the same for planning seeds: a critical value within about 1%


def _key(matrix: np.ndarray) -> tuple:
    return tuple(tuple(row) for row in np.round(matrix, 10))


def _correlation(cov_unit: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.diag(cov_unit))
    return cov_unit / np.outer(sd, sd)


def max_abs_t_cdf(q: float, corr: np.ndarray, df: int, points: int = QUANTILE_POINTS) -> float:
    """P(max_v |t_v| <= q) for t multivariate t with this correlation and df."""
    if len(corr) == 1:
        return float(2 * sps.t.cdf(q, df) - 1)
    bound = np.full(len(corr), q)
    return float(sps.multivariate_t(shape=corr, df=df, allow_singular=True).cdf(
        bound, lower_limit=-bound, maxpts=points * len(corr), random_state=0))


@functools.lru_cache(maxsize=1024)
def _quantile(corr_key: tuple, df: int, level: float) -> float:
    corr, k = np.array(corr_key), len(corr_key)
    low = sps.t.ppf((1 + level) / 2, df)  # one comparison alone: max |t| is at least that
    if k == 1:
        return float(low)
    high = sps.t.ppf(1 - (1 - level) / (2 * k), df)  # Bonferroni: at most that
    return float(optimize.brentq(lambda q: max_abs_t_cdf(q, corr, df) - level,
                                 0.99 * low, 1.01 * high, xtol=1e-5))


def max_t_quantile(cov_unit: np.ndarray, df: int, level: float) -> float:
    """The `level` quantile of max |t| over the comparisons under no effect (df > 0): the
    simultaneous intervals' critical value."""
    return _quantile(_key(_correlation(cov_unit)), df, level)


def adjusted_p(cov_unit: np.ndarray, df: int, t_values: np.ndarray) -> np.ndarray:
    """Each comparison's single-step adjusted p-value, P(max |t| >= its |t|) under no effect."""
    corr = _correlation(cov_unit)
    return np.array([np.nan if np.isnan(t) else  # no difference and no noise at all
                     max(0.0, 1 - max_abs_t_cdf(abs(t), corr, df, P_VALUE_POINTS))
                     for t in t_values])


@functools.lru_cache(maxsize=256)
def _null_max_z(cov_key: tuple) -> float:
    cov = np.array(cov_key)
    z = np.random.default_rng(0).multivariate_normal(np.zeros(len(cov)), cov, size=N_DRAWS,
                                                     method="cholesky")
    return float(np.abs(z).max(axis=1).mean())


def null_max_z(cov_unit: np.ndarray) -> float:
    """What the largest |contrast| averages when no level differs, in units of the error std:
    the head start that the selection-corrected effect takes off (more levels, larger max)."""
    return _null_max_z(_key(cov_unit))


@functools.lru_cache(maxsize=256)
def _student_t(df: float, column: int, draws: int) -> np.ndarray:
    """Seeded Student t draws on df for one cell (its column: cells draw independently): a
    normal over the root of a chi-square drawn by its inverse CDF from uniforms that depend on
    the column only, so the draws move smoothly with df (planning compares nearby dfs)."""
    rng = np.random.default_rng(column)
    z, u = rng.standard_normal(draws), rng.uniform(size=draws)
    return z / np.sqrt(sps.chi2.ppf(u, df) / df)


def fiducial_max(scaled: np.ndarray, df: np.ndarray, draws: int = FIDUCIAL_DRAWS) -> np.ndarray:
    """(draws,) draws of max over the contrasts of |sum_c scaled_c T_c| / its std, T_c
    independent Student t on df_c: the Behrens-Fisher law of the largest standardized contrast.
    scaled: (contrasts, cells), each contrast's coefficients times the cells' standard errors;
    a contrast without noise (all zero) draws 0. Seeded: the same inputs give the same draws."""
    t = np.stack([_student_t(float(f), j, draws) for j, f in enumerate(df)], axis=1)
    norm = np.sqrt((scaled ** 2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        standardized = np.nan_to_num(t @ scaled.T / norm)
    return np.abs(standardized).max(axis=1)


def fiducial_quantile(draws: np.ndarray, level: float) -> float:
    """The `level` quantile of fiducial_max's draws: the simultaneous critical value."""
    return float(np.quantile(draws, level, method="higher"))


def fiducial_p(draws: np.ndarray, t_values: np.ndarray) -> np.ndarray:
    """Each comparison's adjusted p-value P(max >= its |t|), never below 1 / (draws + 1); NaN
    for an undefined t (no difference and no noise)."""
    beyond = (draws[None, :] >= np.abs(t_values)[:, None]).sum(axis=1)
    return np.where(np.isnan(t_values), np.nan, (beyond + 1) / (len(draws) + 1))
