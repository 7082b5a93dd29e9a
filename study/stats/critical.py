"""Simultaneous critical values of a factor's comparisons with its reference level: Dunnett's
method for any contrasts. The quantiles of max |t| over the comparisons, and the mean of max |z|
when no level differs, are drawn by Monte Carlo from the comparisons' correlation (OFAT's share
the baseline point), once per correlation and degrees of freedom (cached).
"""

from __future__ import annotations

import functools

import numpy as np

N_DRAWS = 4000  # Monte Carlo draws per correlation matrix


@functools.lru_cache(maxsize=256)
def _null_draws(cov_key: tuple, df: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws of max_v |z_v| (z ~ N(0, cov), the contrasts in units of the error std) and of
    max_v |t_v| (the same standardised, with the error std estimated on df > 0)."""
    cov = np.array(cov_key)
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=N_DRAWS, method="cholesky")
    scale = np.sqrt(rng.chisquare(df, N_DRAWS) / df)
    return np.abs(z).max(axis=1), np.abs(z / np.sqrt(np.diag(cov))).max(axis=1) / scale


def _key(cov: np.ndarray) -> tuple:
    return tuple(tuple(row) for row in np.round(cov, 10))


def null_max_z(cov_unit: np.ndarray, df: int) -> float:
    """What the largest |contrast| averages when no level differs, in units of the error std:
    the head start that the selection-corrected effect takes off (more levels, larger max)."""
    return float(_null_draws(_key(cov_unit), max(df, 1))[0].mean())


def max_t_draws(cov_unit: np.ndarray, df: int) -> np.ndarray:
    """Draws of max |t| over the comparisons under no effect (df > 0)."""
    return _null_draws(_key(cov_unit), df)[1]
