"""Simultaneous critical values of a factor's comparisons with its reference level: Dunnett's
method for any contrasts. The quantiles of max |t| over the comparisons and the single-step
adjusted p-values come from the multivariate t distribution of the comparisons (their
correlation: OFAT's share the baseline point), integrated by scipy's quasi-Monte Carlo (Genz);
the mean of max |z| when no level differs (the head start the selection-corrected effect takes
off) by Monte Carlo. The quantiles are cached per correlation, degrees of freedom and level,
the head start per covariance.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import optimize
from scipy import stats as sps

N_DRAWS = 4000  # Monte Carlo draws per correlation matrix, for the mean of max |z|
QUANTILE_POINTS = 25_000  # quasi-Monte Carlo points per comparison: quantiles within 0.002
P_VALUE_POINTS = 500  # the same for adjusted p-values: within 2e-4 (two digits are shown)


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
