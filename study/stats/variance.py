"""Each design point's seed variance, moderated toward the study's (empirical Bayes): between
the pooled variance (one noise for every point: powerful, wrong where a level is noisier) and
each point's own (right for any noise, but 2 df from 3 seeds: t(2) tails that claim almost
nothing).

Smyth's model (2004, limma): a point's true variance is drawn from a scaled inverse chi-square
law with `df` degrees of freedom around `variance`, estimated from the replicated points' log
variances by moments (what their spread exceeds the chi-square sampling spread by); a point's
moderated variance is the weighted mean of the prior's and its own, on the sum of their df, and
its mean's error is Student t on that df. Where the points' variances hardly differ the
estimated df is large and the test nearly the pooled one.

The prior's df is capped at PRIOR_DF_CAP, the heavy-tail allowance: a point three times as
noisy as the rest whose three seeds happened to agree cannot be told from the rest by its 2 df,
and an uncapped prior would pull it to the study's noise and claim its noise as an effect (the
earlier, uncapped moderation claimed a null factor in 17-20% of studies with two such points).
Capped, a point's own seeds keep at least 2 / (2 + PRIOR_DF_CAP) of the weight from three seeds
on, more with more seeds; the cap is chosen by the simulations in docs/statistics.md (the
claims of null factors at most 5% with two levels three times as noisy, the power at the full
budget's 3 seeds per point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

PRIOR_DF_CAP = 3  # the most df the study's noise lends a point (docs/statistics.md)
MIN_POINTS = 3  # replicated points needed to estimate the prior (its spread needs several)


@dataclass(frozen=True)
class Prior:
    """The law of the points' true variances: scaled inverse chi-square, `df` (capped) around
    `variance`."""

    variance: float
    df: float

    def moderate(self, variance: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each point's moderated variance and its df (points without a replicate, df 0, get
        the prior's)."""
        own = np.where(df > 0, np.nan_to_num(variance), 0.0)
        return (self.df * self.variance + df * own) / (self.df + df), self.df + df


def _trigamma_inverse(value: float) -> float:
    """x with trigamma(x) = value (> 0): trigamma falls from infinity to zero."""
    return float(optimize.brentq(lambda x: special.polygamma(1, x) - value, 1e-8, 1e8))


def variance_prior(variance: np.ndarray, df: np.ndarray) -> Prior | None:
    """The prior estimated from the points' variances on their df (df 0: not replicated, left
    out); None below MIN_POINTS replicated points with noise (nothing to estimate it from)."""
    used = (df >= 1) & (np.nan_to_num(variance) > 0)
    if used.sum() < MIN_POINTS:
        return None
    z, half = np.log(variance[used]), df[used] / 2
    level = z - special.digamma(half) + np.log(half)  # unbiased for log of the prior's scale
    excess = np.var(z, ddof=1) - special.polygamma(1, half).mean()
    if excess <= 0:  # no more spread than sampling gives: one variance, the pooled one
        scale = float((variance[used] * df[used]).sum() / df[used].sum())
    else:
        d0 = 2 * _trigamma_inverse(excess)
        scale = float(np.exp(level.mean() + special.digamma(d0 / 2) - np.log(d0 / 2)))
        if d0 < PRIOR_DF_CAP:
            return Prior(scale, d0)
    return Prior(scale, float(PRIOR_DF_CAP))
