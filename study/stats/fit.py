"""The study's one fitted model: `fit(trials, spec)` -> `FittedModel`, the only place that
computes cell means, the error variance, the factors' contrasts and what they estimate, the
selection-corrected effect, the divergence rates, and both redraws of the study. The ranking and
verdicts (study.stats.ranking), the ranking over epochs and across budgets (study.stats.stability)
read it.

Cells are design points in a fixed design (ofat, grid: `accuracy ~ C(design_point)` over the
converged trials, the error pooled over every replicated point) and a factor's level bins in a
sampled one (optuna, hydra: a one-way model per factor, its own error). A level's mean is its
cell's mean (OFAT) or the average over the cells at that level (grid). Each factor's levels are
contrasts of cell means (`FactorFit`): differences from the reference level. Where the
reference's cells and some level's have two converged trials, their standard errors,
simultaneous critical values and adjusted p-values come from each cell's own seed variance,
moderated toward the study's (study.stats.variance), in the Behrens-Fisher law
(study.stats.critical: levels may differ in noise); `screen` holds the same under the pooled
error (an F-test and Dunnett-type critical values), which is all a factor gets whose levels have
one seed each. Both beside the mean of the largest |difference| when nothing differs.

The same model turns any accuracies of its trials (trials x columns: the test accuracy after
each epoch, or bootstrap redraws) into effects (`effects`), so every effect the report shows is
computed one way. Two redraws give intervals: a parametric one (`parametric_redraws`: every cell
mean redrawn with its standard error, the error std from its chi-square law; it works with one
seed per point) behind the rank intervals, and a residual bootstrap (`residual_redraws`: each
trial's fitted value plus the whole residual curve of a trial drawn from the replicated points,
so the noise keeps its correlation across epochs) behind the rank correlations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from study.design.spec import StudySpec
from study.outcomes import NOT_LEARNED
from study.stats.critical import (
    adjusted_p,
    fiducial_max,
    fiducial_p,
    fiducial_quantile,
    max_t_quantile,
    null_max_z,
)
from study.stats.frames import ACCURACY, converged, finished
from study.stats.slices import factor_slices, level_order, reference_level
from study.stats.variance import Prior, variance_prior

ALPHA = 0.05  # family-wise error rate of a study's claims: over its factors and its looks
CONFIDENCE = 0.95  # of the level intervals and divergence-rate intervals (descriptive)
POOLED = "pooled"  # the error id of a fixed design's one model
RANK_DRAWS = 1000  # parametric redraws behind the rank intervals
BOOTSTRAP_DRAWS = 400  # residual-bootstrap redraws behind the rank correlations


@dataclass(frozen=True)
class Noise:
    """The seed-to-seed noise of converged test accuracy; NaN where it cannot be measured."""

    baseline_mean: float
    baseline_std: float  # the baseline point's seed std (NaN below two converged seeds)
    baseline_converged: int  # converged trials at the baseline point
    pooled_std: float  # pooled over every replicated design point
    pooled_df: int
    prior_std: float  # the study-wide std each point's variance is moderated toward
    prior_df: float  # and the df it lends (NaN both: too few replicated points)

    def band(self) -> tuple[float, float] | None:
        """The baseline's mean +- 2 seed std (what seed noise alone moves a level by); None
        without two converged baseline seeds."""
        if np.isnan(self.baseline_std):
            return None
        return (self.baseline_mean - 2 * self.baseline_std,
                self.baseline_mean + 2 * self.baseline_std)


@dataclass
class CellTable:
    """Cell means and the within-cell std pooled over the cells, of each column of accuracies."""

    cells: list[Any]
    n: np.ndarray  # (cells,) trials per cell
    means: np.ndarray  # (cells, columns)
    ss: np.ndarray  # (cells, columns) within-cell sums of squares
    s: np.ndarray  # (columns,) pooled std; NaN without a cell of two trials
    df: int

    def rows(self, cells: list[Any]) -> list[int]:
        return [self.cells.index(cell) for cell in cells]

    def own_variance(self) -> np.ndarray:
        """(cells,) each cell's seed variance of the first column; NaN below two trials."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n >= 2, self.ss[:, 0] / (self.n - 1), np.nan)

    def prior(self) -> Prior | None:
        """The law of the cells' variances that moderates each one (study.stats.variance)."""
        return variance_prior(self.own_variance(), np.clip(self.n - 1, 0, None))


def cell_table(labels: np.ndarray, cells: list[Any], accuracy: np.ndarray) -> CellTable:
    """The table of `accuracy` (trials x columns) over `cells`; labels: each trial's cell
    (a trial in none of them is left out)."""
    member = (labels[None, :] == np.array(cells, dtype=object)[:, None]).astype(float)
    n = member.sum(axis=1)
    size = np.maximum(n, 1)[:, None]
    rough = member @ accuracy / size
    # a second pass over the deviations: a cell of equal accuracies gets exactly their value,
    # so that equal results differ by exactly zero and show no noise
    means = rough + member @ (accuracy - member.T @ rough) / size
    ss = member @ (accuracy - member.T @ means) ** 2
    df = int(np.clip(n - 1, 0, None).sum())
    s = np.sqrt(ss.sum(axis=0) / df) if df else np.full(accuracy.shape[1], np.nan)
    return CellTable(list(cells), n, means, ss, s, df)


@dataclass
class ErrorGroup:
    """The cells that share one error estimate, and each fitted trial's cell (None: none)."""

    labels: np.ndarray
    cells: list[Any]

    def table(self, accuracy: np.ndarray) -> CellTable:
        return cell_table(self.labels, self.cells, accuracy)


def corrected_effect(largest: np.ndarray | float, s: np.ndarray | float, null_z: float
                     ) -> np.ndarray | float:
    """The selection-corrected effect: the largest |difference from the reference| less what
    that maximum averages when no level differs (s * null_z), so that a factor with more levels
    gains no head start; below zero when the largest difference is smaller than that."""
    return largest - s * null_z


@dataclass
class FactorFit:
    """One factor's levels as weighted means of cell means under one error estimate, and the
    differences of the other levels from the reference level."""

    factor: str
    levels: list[Any]  # design order; levels without a converged trial are left out
    reference: Any  # the baseline level: what every other level is compared with
    cells: list[Any]  # design points (fixed designs) or `factor=level` bins
    weights: np.ndarray  # (levels, cells): each level mean as a weighted mean of cell means
    n: np.ndarray  # converged trials per cell
    mean: np.ndarray  # mean accuracy per cell
    variance: np.ndarray  # each cell's own seed variance (NaN below two converged trials)
    s: float  # error std (NaN without replicates)
    df: int  # its degrees of freedom
    error_id: str  # fits with the same id share the error estimate
    ss_between: float  # sums of squares of the factor's slice: between its levels
    ss_total: float  # and in all
    differences: np.ndarray  # each other level minus the reference
    own_variance: bool  # every cell has two converged trials: every level shows its own noise
    claimable: np.ndarray  # per other level: it and the reference show their own noise, so an
    # effect there can be claimed; none where the contrasts use the pooled error (a screening)
    moderated: np.ndarray  # each cell's moderated variance (study.stats.variance; NaN: none)
    moderated_df: np.ndarray  # and its df
    prior_df: float  # the df the study's noise lends each cell (0: none)
    se: np.ndarray  # their standard errors (NaN without a noise estimate)
    p_each: np.ndarray  # simultaneous (single-step adjusted) p per level
    q_effect: float  # simultaneous critical values of max |t| over the levels at 1 - alpha
    q_equivalence: float  # and at 1 - 2 alpha (the equivalence test)
    p: float  # the factor's test: the smallest p of a claimable level (the max-t test), or the
    # pooled F-test in a screening
    screen: dict[str, Any]  # se, p_each, q_effect, q_equivalence, p under the pooled error
    null_z: float  # mean max |difference| under no effect, in units of s

    @property
    def contrasts(self) -> np.ndarray:
        """(levels - 1, cells): each non-reference level minus the reference."""
        ref = self.levels.index(self.reference)
        return np.delete(self.weights, ref, axis=0) - self.weights[ref]

    @property
    def others(self) -> list[Any]:
        return [level for level in self.levels if level != self.reference]

    @property
    def corrected(self) -> float:
        """The selection-corrected effect (NaN without a noise estimate); ranks the factors."""
        return float(corrected_effect(np.abs(self.differences).max(), self.s, self.null_z))

    def unreplicated_levels(self) -> list[Any]:
        """The levels with a cell of fewer than two converged trials: their own noise is
        unknown."""
        short = self.n < 2
        return [level for level, row in zip(self.levels, self.weights, strict=True)
                if (short & (row != 0)).any()]

    def level_rows(self) -> list[dict]:
        """Each level's mean accuracy with a 95% t-interval from its own cells' seeds (Welch-
        Satterthwaite df where a level averages several): a level three times as noisy as the
        rest is covered as often as the rest, where the pooled or moderated noise would not
        (one interval holds no multiplicity to spare); NaN where a cell has one seed."""
        means = self.weights @ self.mean
        parts = self.weights ** 2 * self.variance / self.n  # (levels, cells); NaN: one seed
        parts = np.where(self.weights != 0, parts, 0.0)
        se = np.sqrt(parts.sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            df = parts.sum(axis=1) ** 2 / (parts ** 2 / np.maximum(self.n - 1, 1)).sum(axis=1)
            half = np.where(se == 0, 0.0, sps.t.ppf(0.5 + CONFIDENCE / 2, df) * se)
        counts = self.weights.astype(bool) @ self.n
        return [{"factor": self.factor, "level": level, "n": int(n), "mean": m, "ci_low": m - h,
                 "ci_high": m + h}
                for level, n, m, h in zip(self.levels, counts, means, half, strict=True)]

    def omega_squared(self) -> float:
        """Omega-squared of the factor's slice with the error variance, clipped at zero:
        eta-squared less what it averages when the levels do not differ."""
        if self.df == 0 or self.ss_total == 0:
            return float("nan")
        k, mse = len(self.levels), self.s ** 2
        return max(0.0, (self.ss_between - (k - 1) * mse) / (self.ss_total + mse))


LEVEL_COLUMNS = ["factor", "level", "n", "mean", "ci_low", "ci_high"]


def _factor_fit(factor: str, part: pd.DataFrame, levels: list[Any], reference: Any,
                points: dict[Any, list[Any]], table: CellTable, prior: Prior | None,
                error_id: str, alpha: float) -> FactorFit:
    """The fit of one factor from its converged slice `part`, `points` (level -> its cells),
    the cell table of its error group and the prior of its cells' variances, its critical
    values at error rate `alpha`."""
    cells = sorted({c for cs in points.values() for c in cs})
    rows = table.rows(cells)
    weights = np.array([[1 / len(points[level]) if c in points[level] else 0.0 for c in cells]
                        for level in levels])
    n, mean, s = table.n[rows], table.means[rows, 0], float(table.s[0])
    values = part[ACCURACY].astype(float)
    by_level = values.groupby(part["level"])
    between = float((by_level.count() * (by_level.mean() - values.mean()) ** 2).sum())
    ref = levels.index(reference)
    contrasts = np.delete(weights, ref, axis=0) - weights[ref]
    d = contrasts @ mean
    cov_unit = (contrasts / n) @ contrasts.T
    variance, df = table.own_variance()[rows], np.clip(n - 1, 0, None)
    replicated = n >= 2
    if prior is not None:
        moderated, moderated_df = prior.moderate(variance, df)
    else:  # no law of the variances to moderate by: each cell's own, where it has one
        moderated, moderated_df = variance, df.astype(float)
    prior_df = prior.df if prior is not None else 0.0
    claimable = np.array([replicated[(row != 0) | (weights[ref] != 0)].all()
                          for row in np.delete(weights, ref, axis=0)])
    screen = _pooled_dunnett(cov_unit, s, table.df, d, alpha)
    if claimable.any() and (prior is not None or replicated.all()):
        estimates = behrens_fisher(contrasts, n, moderated, moderated_df, d, alpha, claimable)
    else:
        estimates, claimable = screen, np.zeros(len(d), bool)
        moderated = np.full(len(n), np.nan)
    return FactorFit(
        factor=factor, levels=levels, reference=reference, cells=cells, weights=weights, n=n,
        mean=mean, variance=variance, s=s, df=table.df, error_id=error_id, ss_between=between,
        ss_total=float(((values - values.mean()) ** 2).sum()), differences=d,
        own_variance=bool(replicated.all() and claimable.any()), claimable=claimable,
        moderated=moderated, moderated_df=moderated_df, prior_df=prior_df, **estimates,
        screen=screen, null_z=null_max_z(cov_unit))


def fiducial_se(contrasts: np.ndarray, n: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """(contrasts, cells): each contrast's coefficients times its cells' own standard errors;
    the contrast's standard error is the root of its row's sum of squares."""
    return contrasts * np.sqrt(variance / n)


def behrens_fisher(contrasts: np.ndarray, n: np.ndarray, variance: np.ndarray, df: np.ndarray,
                   d: np.ndarray, alpha: float = ALPHA, claimable: np.ndarray | None = None
                   ) -> dict[str, Any]:
    """The contrasts from each cell's variance on its df (its own, or moderated): standard
    errors, and simultaneous critical values and adjusted p-values from the Behrens-Fisher law
    of the largest standardized contrast (study.stats.critical): what holds when levels differ
    in noise (a sigmoid or a high learning rate is noisier than the baseline), even with few
    seeds. The factor's p is the smallest of the `claimable` contrasts' (default: all): every
    contrast counts in the law, so the multiplicity of the levels not yet claimable is kept."""
    scaled = fiducial_se(contrasts, n, variance)
    se = np.sqrt((scaled ** 2).sum(axis=1))
    draws = fiducial_max(scaled, df)
    with np.errstate(divide="ignore", invalid="ignore"):  # no noise at all: t is inf or NaN
        t = np.abs(d) / se
    p_each = fiducial_p(draws, t)
    tested = p_each[np.ones(len(d), bool) if claimable is None else claimable]
    return {"se": se, "p_each": p_each,
            "q_effect": fiducial_quantile(draws, 1 - alpha),
            "q_equivalence": fiducial_quantile(draws, 1 - 2 * alpha),
            "p": float(np.nanmin(tested)) if not np.isnan(tested).all() else np.nan}


def _pooled_dunnett(cov_unit: np.ndarray, s: float, df: int, d: np.ndarray, alpha: float
                    ) -> dict[str, Any]:
    """The contrasts under one error std `s` (df) for all cells: Dunnett-type simultaneous
    critical values and an F-test; NaN without a noise estimate (df 0)."""
    k = len(d)
    nan = np.full(k, np.nan)
    if not df:
        return {"se": nan, "p_each": nan, "q_effect": np.nan, "q_equivalence": np.nan,
                "p": np.nan}
    se = s * np.sqrt(np.diag(cov_unit))
    with np.errstate(divide="ignore", invalid="ignore"):  # no noise at all (s = 0): t is inf
        t = np.abs(d) / se
        wald = d @ np.linalg.pinv(cov_unit) @ d / s ** 2 / k
    return {"se": se, "p_each": adjusted_p(cov_unit, df, t),
            "q_effect": max_t_quantile(cov_unit, df, 1 - alpha),
            "q_equivalence": max_t_quantile(cov_unit, df, 1 - 2 * alpha),
            "p": float(sps.f.sf(wald, k, df))}


def _noise(points: CellTable, prior: Prior | None) -> Noise:
    """The baseline point's noise, the noise pooled over all design points, and the law their
    variances are moderated by."""
    at = points.rows(["baseline"]) if "baseline" in points.cells else []
    count = int(points.n[at[0]]) if at else 0
    return Noise(baseline_mean=float(points.means[at[0], 0]) if count else np.nan,
                 baseline_std=float(np.sqrt(points.ss[at[0], 0] / (count - 1)))
                 if count > 1 else np.nan,
                 baseline_converged=count, pooled_std=float(points.s[0]),
                 pooled_df=points.df,
                 prior_std=np.sqrt(prior.variance) if prior else np.nan,
                 prior_df=prior.df if prior else np.nan)


def divergence(spec: StudySpec, slices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (factor, level) of the finished trials: diverged (or stalled: study.outcomes) of
    finished, the rate with a 95% Wilson interval, and Fisher's exact p against the factor's
    reference level."""
    rows = []
    for factor, part in slices.items():
        done = finished(part)
        counts = done["outcome"].isin(NOT_LEARNED).groupby(done["level"], sort=False).agg(
            diverged="sum", trials="count")
        present = level_order(spec, factor, list(counts.index))
        if not present:
            continue
        reference = reference_level(spec, factor, present)  # None: divergence is not compared
        diverged, trials = (counts.loc[present, column].to_numpy(int)
                            for column in ("diverged", "trials"))
        lows, highs = proportion_confint(diverged, trials, alpha=1 - CONFIDENCE,
                                         method="wilson")
        compared = reference is not None and diverged.sum() > 0
        kb, nb = counts.loc[reference] if compared else (0, 0)
        for level, k, n, low, high in zip(present, diverged, trials, lows, highs, strict=True):
            p = np.nan
            if compared and level != reference:
                p = sps.fisher_exact([[k, n - k], [kb, nb - kb]]).pvalue
            rows.append({"factor": factor, "level": level, "diverged": k, "trials": n,
                         "rate": k / n, "rate_low": low, "rate_high": high, "fisher_p": p,
                         "baseline": level == reference})
    return pd.DataFrame(rows, columns=["factor", "level", "diverged", "trials", "rate",
                                       "rate_low", "rate_high", "fisher_p", "baseline"])


@dataclass
class FittedModel:
    """A study's trials under its model (see the module's docstring)."""

    spec: StudySpec
    converged: pd.DataFrame  # the fitted trials, in the order `effects` reads accuracies
    slices: dict[str, pd.DataFrame]  # each studied factor's slice of all trials, with `level`
    factors: dict[str, FactorFit]  # the factors with two levels that have converged trials
    divergence: pd.DataFrame  # per (factor, level): `divergence`
    noise: Noise
    pooled: bool  # one model over all design points (fixed designs), else one per factor
    alpha: float  # the error rate each claim is tested at (study_alpha)
    errors: dict[str, ErrorGroup]  # error id -> its cells
    points: ErrorGroup  # the design points: the noise and the bootstrap's residuals

    def effects(self, accuracy: np.ndarray) -> np.ndarray:
        """(columns, factors) selection-corrected effects of accuracies of the fitted trials
        (trials x columns); NaN where a factor's noise cannot be measured."""
        tables = {error_id: group.table(accuracy) for error_id, group in self.errors.items()}
        out = np.full((accuracy.shape[1], len(self.factors)), np.nan)
        for j, fit_ in enumerate(self.factors.values()):
            table = tables[fit_.error_id]
            spread = np.abs(fit_.contrasts @ table.means[table.rows(fit_.cells)]).max(axis=0)
            out[:, j] = corrected_effect(spread, table.s, fit_.null_z)
        return out

    def parametric_redraws(self, draws: int = RANK_DRAWS, seed: int = 1) -> pd.DataFrame:
        """(draws, factors) effects of studies redrawn from the fitted model: every cell mean
        with its standard error, the error std from its chi-square law."""
        rng = np.random.default_rng(seed)
        cells = sorted({c for fit_ in self.factors.values() for c in fit_.cells})
        z = dict(zip(cells, rng.standard_normal((len(cells), draws)), strict=True))
        errors = {fit_.error_id: (fit_.s, fit_.df) for fit_ in self.factors.values()}
        scale = {error_id: s * np.sqrt(rng.chisquare(df, draws) / df)
                 for error_id, (s, df) in errors.items()}
        effects = {}
        for name, fit_ in self.factors.items():
            noise = np.stack([z[c] for c in fit_.cells]) / np.sqrt(fit_.n)[:, None]
            means = fit_.mean[:, None] + noise * scale[fit_.error_id]
            effects[name] = corrected_effect(np.abs(fit_.contrasts @ means).max(axis=0), fit_.s,
                                             fit_.null_z)
        return pd.DataFrame(effects)

    def residual_redraws(self, accuracy: np.ndarray, rng: np.random.Generator,
                         count: int = BOOTSTRAP_DRAWS) -> np.ndarray | None:
        """(count, columns, factors) effects of residual-bootstrap redraws of accuracies of the
        fitted trials (trials x columns); None without a replicated design point."""
        table = self.points.table(accuracy)
        at = np.array([table.cells.index(p) if p in table.cells else -1
                       for p in self.points.labels], dtype=int)
        if not (at >= 0).any():
            return None
        placed = (at >= 0)[:, None]  # a trial without a design point is its own fitted value
        fitted = np.where(placed, table.means[np.maximum(at, 0)], accuracy)
        size_of = np.where(at >= 0, table.n[np.maximum(at, 0)], 1)
        replicated = size_of > 1
        if not replicated.any():
            return None
        # rescaled: a residual from a point of n trials has (n - 1) / n of the noise variance
        residuals = ((accuracy - fitted) * np.sqrt(size_of / np.maximum(size_of - 1, 1))[:, None]
                     )[replicated]
        picks = rng.integers(0, len(residuals), size=(count, len(accuracy)))
        redrawn = fitted[None] + residuals[picks]  # (count, trials, columns)
        columns = redrawn.transpose(1, 0, 2).reshape(len(accuracy), -1)
        return self.effects(columns).reshape(count, accuracy.shape[1], len(self.factors))


def first_look_claims(spec: StudySpec) -> bool:
    """Whether a study's design trials can support a claim: not an OFAT design of one seed per
    point (a claim about accuracy needs two converged seeds at the level, and one trial cannot
    diverge significantly more often than the baseline's: Fisher's p is at least
    1 / (baseline seeds + 1))."""
    one_trial_p = 1 / (len(spec.baseline_seeds or spec.seeds) + 1)
    return not (spec.design == "ofat" and len(spec.seeds) < 2 and one_trial_p >= ALPHA)


def study_alpha(spec: StudySpec) -> float:
    """The error rate a study's claims are tested at: ALPHA, split evenly over the looks that
    can claim of a study that adds seeds until its factors are decided (spec.looks; Bonferroni
    over the looks: whichever look it stops at, a wrong claim has at most ALPHA chance). A first
    look that cannot claim (first_look_claims) spends nothing."""
    if not spec.looks:
        return ALPHA
    return ALPHA / (spec.looks - (not first_look_claims(spec)))


def fit(trials: pd.DataFrame, spec: StudySpec) -> FittedModel:
    """The model of a study's trials (every state: the converged ones are fitted, the finished
    ones give the divergence rates)."""
    slices = factor_slices(trials, spec)
    done = converged(trials)
    observed = done[ACCURACY].to_numpy(float)[:, None]
    points = ErrorGroup(done["design_point"].to_numpy(object),
                        sorted(done["design_point"].dropna().unique()))
    point_table = points.table(observed)
    point_prior = point_table.prior()
    pooled, alpha = spec.plan.fixed, study_alpha(spec)
    errors = {POOLED: points} if pooled else {}
    fits = {}
    for factor, part in slices.items():
        part = converged(part)
        levels = level_order(spec, factor, list(part["level"].unique()))
        reference = reference_level(spec, factor, levels) if len(levels) > 1 else None
        if reference is None:  # one level, or no converged baseline trial to compare with
            continue
        if pooled:
            cells_of = {level: sorted(part.loc[part["level"] == level, "design_point"].unique())
                        for level in levels}
            table, prior, error_id = point_table, point_prior, POOLED
        else:  # a sampled design: the factor's levels are its cells and its error groups
            cells_of = {level: [f"{factor}={level}"] for level in levels}
            labels = pd.Series(None, index=done.index, dtype=object)
            labels[part.index] = [f"{factor}={v}" for v in part["level"]]
            errors[factor] = ErrorGroup(labels.to_numpy(object),
                                        [c for cs in cells_of.values() for c in cs])
            table, error_id = errors[factor].table(observed), factor
            prior = table.prior()
        fits[factor] = _factor_fit(factor, part, levels, reference, cells_of, table, prior,
                                   error_id, alpha)
    return FittedModel(spec, done, slices, fits, divergence(spec, slices),
                       _noise(point_table, point_prior), pooled, alpha, errors, points)
