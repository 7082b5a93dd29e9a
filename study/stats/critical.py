"""Simultaneous critical values of a factor's comparisons with its reference level.

Under one error variance for all cells (the pooled screening): Dunnett's method for any
contrasts. The quantiles of max |t| over the comparisons and the single-step adjusted p-values
come from the multivariate t distribution of the comparisons. Where the comparisons share one
reference (OFAT's share the baseline point; a grid's levels share the reference level's mean)
their correlations are products, corr_ij = l_i l_j, and the law is a double integral (Dunnett
1955): given the reference's standardized error z and the error scale s the comparisons are
independent. `dunnett_cdf` computes it by Gauss-Hermite quadrature over z and Gauss-Legendre over
s, within 1e-7 of adaptive quadrature where every loading is at most MAX_LOADING (1e-13 at the
default design's loadings). Other correlations, and loadings so close to 1 that the integrand in
z is a step, take scipy's quasi-Monte Carlo (Genz). The mean of max |z| when no level differs
(the head start the selection-corrected effect takes off) is by Monte Carlo. The quantiles are
cached per correlation, degrees of freedom and level, the head start per covariance.

With each cell's own variance (levels may differ in noise): the Behrens-Fisher (fiducial) law
of the largest standardized contrast, each cell mean's error its standard error times an
independent Student t on the cell's df (`fiducial_max`), by seeded Monte Carlo. Its intervals
are conservative for any variances (Robinson 1976), where Welch's t is not with few seeds: at 3
seeds against 6 and a level three times as noisy, Welch's 1% test rejects 2.4% of the time.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

N_DRAWS = 4000  # Monte Carlo draws per correlation matrix, for the mean of max |z|
QUANTILE_POINTS = 25_000  # quasi-Monte Carlo points per comparison: quantiles within 0.002
P_VALUE_POINTS = 500  # the same for adjusted p-values: within 2e-4 (two digits are shown)
QUADRATURE_NODES = 96  # per dimension of Dunnett's double integral: within 1e-13 at OFAT's
MAX_LOADING = 0.95  # a comparison's loading on the shared reference: above, the nodes lose 1e-7
SCALE_TAIL = 1e-13  # the error scale's quadrature covers its law but this much at each end
FIDUCIAL_DRAWS = 20_000  # Monte Carlo draws of the Behrens-Fisher law: p-values to 1 / 20,000
PLANNING_DRAWS = 4_000  # the same for planning seeds: a critical value within about 1%


def _key(matrix: np.ndarray) -> tuple:
    return tuple(tuple(row) for row in np.round(matrix, 10))


def _correlation(cov_unit: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.diag(cov_unit))
    return cov_unit / np.outer(sd, sd)


def shared_reference_loadings(corr: np.ndarray) -> np.ndarray | None:
    """l with corr_ij = l_i l_j for every i != j (comparisons correlated only through one
    shared reference), each |l_i| <= MAX_LOADING; None where the correlation is not of that form
    or a loading is larger."""
    k = len(corr)
    loadings = np.empty(k)
    for i in range(k):
        # l_i^2 = corr_ij corr_im / corr_jm: from the other pair most correlated (most stable)
        j, m = max(((j, m) for j in range(k) for m in range(j + 1, k) if i not in (j, m)),
                   key=lambda pair: abs(corr[pair]), default=(i, i))
        if j == i:  # two comparisons: any correlation is a product
            loadings[i] = np.sqrt(abs(corr[0, 1]))
        elif corr[j, m] == 0:
            return None
        else:
            loadings[i] = np.sqrt(max(0.0, corr[i, j] * corr[i, m] / corr[j, m]))
    loadings[1:] *= np.where(corr[0, 1:] < 0, -1.0, 1.0)
    off = ~np.eye(k, dtype=bool)  # the cache key rounds the correlation to 1e-10
    if (np.abs(loadings) > MAX_LOADING).any() or not np.allclose(
            np.outer(loadings, loadings)[off], corr[off], rtol=0, atol=1e-9):
        return None
    return loadings


@functools.lru_cache(maxsize=64)
def _scale_rule(df: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights of the error scale s (df s^2 ~ chi2(df)) over its
    central 1 - 2 SCALE_TAIL, the weights times s's density."""
    x, w = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    low, high = np.sqrt(sps.chi2.ppf([SCALE_TAIL, 1 - SCALE_TAIL], df) / df)
    s = low + (high - low) * (x + 1) / 2
    return s, w * (high - low) / 2 * 2 * df * s * sps.chi2.pdf(df * s ** 2, df)


_Z, _Z_WEIGHTS = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
_Z_WEIGHTS = _Z_WEIGHTS / np.sqrt(2 * np.pi)  # E[f(z)] for z ~ N(0, 1)


def dunnett_cdf(q: float, loadings: np.ndarray, df: int) -> float:
    """P(max_i |t_i| <= q) for t multivariate t on df with corr_ij = l_i l_j: given the shared
    reference's z and the scale s, t_i s = l_i z + sqrt(1 - l_i^2) e_i with e_i independent."""
    s, s_weights = _scale_rule(df)
    width = np.sqrt(1 - loadings ** 2)
    shift = loadings * _Z[:, None]  # (z, comparison)
    bound = q * s[:, None, None]  # (s, 1, 1)
    inside = np.prod(special.ndtr((bound - shift) / width) - special.ndtr((-bound - shift) / width),
                     axis=2)
    return float(s_weights @ inside @ _Z_WEIGHTS)


def max_abs_t_cdf(q: float, corr: np.ndarray, df: int, points: int = QUANTILE_POINTS) -> float:
    """P(max_v |t_v| <= q) for t multivariate t with this correlation and df: exact by
    quadrature for comparisons sharing one reference, else quasi-Monte Carlo with `points`
    points per comparison."""
    if len(corr) == 1:
        return float(2 * sps.t.cdf(q, df) - 1)
    loadings = shared_reference_loadings(corr)
    if loadings is not None:
        return dunnett_cdf(q, loadings, df)
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


@functools.lru_cache(maxsize=4096)  # planning bisects over seeds: a df per cell and step
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
