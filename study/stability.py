"""How far a ranking holds, as plain data: the factors' effects after every epoch of one study
(`epoch_ranking`), and in studies of the same design at other budgets (`compare_rankings`), each
ranking compared with a reference one by Spearman's and Kendall's rank correlations with
bootstrap intervals. The report (study.report) and its figures (study.plots) consume them.

An effect here is the ranking's own (study.stats): a factor's largest |difference from the
baseline| less what that maximum averages when nothing matters, from the pooled model of
study.contrasts. `EffectModel` holds a study's comparisons and recomputes the effects from any
matrix of accuracies (trials x epochs), which makes two things cheap:
- per epoch: the accuracies are the test accuracies each trial reported after each epoch (its
  Optuna intermediate values). Only converged trials that trained the baseline's number of epochs
  and were tested after each of them count (a level of the `epochs` factor trains another
  schedule, so its epoch e is not the baseline's);
- the bootstrap: a residual bootstrap of the fitted model. Each draw adds to every trial's
  fitted values (its design point's mean curve) the whole residual curve of a trial drawn from
  the replicated points (rescaled for the degrees of freedom its point's mean used), so the
  noise keeps its correlation across epochs, and one seed per point still gets an interval from
  the replicated baseline. Without a replicated point there is no interval: n/a.
The ranking counts as stable from the first epoch after which Spearman's rho with the final
ranking stays at or above STABLE_RHO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from study.analysis import ACCURACY, converged, level_slice
from study.contrasts import Comparison, comparisons, factor_slices, null_max_z
from study.spec import StudySpec
from study.stats import Analysis

DRAWS = 400  # bootstrap draws
STABLE_RHO = 0.9  # Spearman's rho with the final ranking from which a ranking counts as stable
MIN_FACTORS = 3  # fewer ranked factors: no rank correlation
CORRELATIONS = ("spearman", "kendall")


@dataclass
class EffectModel:
    """A study's comparisons, ready to turn accuracies (trials x columns) into effects."""

    factors: list[str]
    members: list[np.ndarray]  # per factor: (cells, trials) averaging matrix of its cells
    contrasts: list[np.ndarray]  # per factor: (levels - 1, cells) level contrasts
    error_groups: list[np.ndarray]  # per factor: (groups, trials) membership of its error cells
    null: np.ndarray  # per factor: mean max |z| of its contrasts under no effect (units of s)
    points: np.ndarray  # (points, trials) membership of the design points: the residuals

    def effects(self, accuracy: np.ndarray) -> np.ndarray:
        """(columns, factors) selection-corrected effects of accuracy (trials x columns); NaN
        where a factor's noise cannot be measured."""
        out = np.full((accuracy.shape[1], len(self.factors)), np.nan)
        for j, (member, contrast, groups, null) in enumerate(zip(
                self.members, self.contrasts, self.error_groups, self.null, strict=True)):
            spread = np.abs(contrast @ (member @ accuracy)).max(axis=0)
            out[:, j] = spread - _pooled_std(groups, accuracy) * null
        return out

    def draws(self, accuracy: np.ndarray, rng: np.random.Generator, count: int = DRAWS
              ) -> np.ndarray | None:
        """(count, columns, factors) effects of residual-bootstrap redraws; None without a
        replicated design point."""
        sizes = self.points.sum(axis=1)
        fitted = self.points.T @ ((self.points @ accuracy) / sizes[:, None])
        size_of = self.points.T @ sizes
        replicated = size_of > 1
        if not replicated.any():
            return None
        residuals = ((accuracy - fitted) * np.sqrt(size_of / np.maximum(size_of - 1, 1))[:, None]
                     )[replicated]
        picks = rng.integers(0, len(residuals), size=(count, len(accuracy)))
        return np.stack([self.effects(fitted + residuals[pick]) for pick in picks])


def _pooled_std(groups: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Per column: the within-group std pooled over the groups (rows of the membership matrix);
    NaN without a group of two."""
    sizes = groups.sum(axis=1)
    df = (sizes - 1).clip(min=0).sum()
    if df == 0:
        return np.full(accuracy.shape[1], np.nan)
    means = (groups @ accuracy) / np.maximum(sizes, 1)[:, None]
    deviations = accuracy - groups.T @ means
    return np.sqrt((deviations ** 2 * groups.sum(axis=0)[:, None]).sum(axis=0) / df)


def _membership(labels: pd.Series, cells: list) -> np.ndarray:
    return (labels.to_numpy()[None, :] == np.array(cells, dtype=object)[:, None]).astype(float)


def effect_model(trials: pd.DataFrame, spec: StudySpec) -> EffectModel | None:
    """The model of these trials (their ACCURACY column: any one result per trial, e.g. the
    final one); None when no factor has two levels with converged trials."""
    done = converged(trials)
    slices = factor_slices(done, spec)
    comps: dict[str, Comparison] = comparisons(done, spec, slices)
    if not comps:
        return None
    points = list(done["design_point"].unique())
    model = EffectModel([], [], [], [], np.zeros(0), _membership(done["design_point"], points))
    nulls = []
    for factor, comp in comps.items():
        if comp.error_id == "pooled":
            cells = pd.Series(done["design_point"].to_numpy(), index=done.index)
            groups = model.points
        else:  # a sampled design: the factor's level bins are its cells and its error groups
            part = level_slice(done, factor, spec)
            cells = pd.Series([f"{factor}={v}" for v in part["level"]], index=part.index)
            cells = cells.reindex(done.index)
            groups = _membership(cells, comp.cells)
        member = _membership(cells, comp.cells)
        model.factors.append(factor)
        model.members.append(member / member.sum(axis=1, keepdims=True))
        model.contrasts.append(comp.contrasts)
        model.error_groups.append(groups)
        nulls.append(null_max_z(comp))
    model.null = np.array(nulls)
    return model


def rank_correlations(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's rho and Kendall's tau-b of each row of x with the same row of y (rows: e.g.
    bootstrap draws; columns: factors, all defined); NaN for a constant row or fewer than
    MIN_FACTORS columns."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    if x.shape[1] < MIN_FACTORS:
        return np.full(len(x), np.nan), np.full(len(x), np.nan)
    rx, ry = (sps.rankdata(v, axis=1) for v in (x, y))
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    i, j = np.triu_indices(x.shape[1], k=1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant row: NaN
        rho = (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
        tau = (sx * sy).sum(axis=1) / np.sqrt((sx ** 2).sum(axis=1) * (sy ** 2).sum(axis=1))
    return rho, tau


def correlation_row(x: np.ndarray, y: np.ndarray, x_draws: np.ndarray | None,
                    y_draws: np.ndarray | None) -> dict[str, float]:
    """Both correlations of effects x with effects y over the factors where both are defined,
    each with the central 95% of its bootstrap draws (n/a without draws, or where fewer than
    half the draws define it)."""
    ok = np.isfinite(x) & np.isfinite(y)
    estimates = rank_correlations(x[ok], y[ok])
    drawn = (rank_correlations(x_draws[:, ok], y_draws[:, ok])
             if x_draws is not None and y_draws is not None else None)
    row = {}
    for k, name in enumerate(CORRELATIONS):
        row[name] = float(estimates[k][0])
        values = drawn[k][np.isfinite(drawn[k])] if drawn is not None else np.array([])
        enough = drawn is not None and len(values) >= len(drawn[k]) / 2 and np.isfinite(row[name])
        low, high = np.quantile(values, [0.025, 0.975]) if enough else (np.nan, np.nan)
        row |= {f"{name}_low": float(low), f"{name}_high": float(high)}
    return row


@dataclass
class EpochRanking:
    """Effects after every epoch and how each epoch's ranking agrees with the final one."""

    effects: pd.DataFrame  # epoch, factor, effect (clipped at 0), corrected
    correlations: pd.DataFrame  # epoch, spearman(_low, _high), kendall(_low, _high)
    stable_from: int | None  # the first epoch from which rho stays >= STABLE_RHO
    trials: int  # the trials used
    epochs: int


def epoch_matrix(trials: pd.DataFrame, curves: pd.DataFrame, epochs: int
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """The converged trials tested after each of `epochs` epochs (and trained no more), and
    their test accuracies (trials x epochs)."""
    tested = curves.dropna(subset=[ACCURACY]).pivot_table(index="number", columns="epoch",
                                                          values=ACCURACY)
    wanted = tested.reindex(columns=range(1, epochs + 1))
    complete = wanted.notna().all(axis=1) & tested.notna().sum(axis=1).eq(epochs)
    done = converged(trials)
    done = done[done["number"].isin(complete.index[complete])]
    return done, wanted.loc[done["number"]].to_numpy(float)


def epoch_ranking(trials: pd.DataFrame, curves: pd.DataFrame, spec: StudySpec,
                  seed: int = 0) -> EpochRanking | None:
    """The factors' effects after each epoch, and each epoch's rank correlation with the final
    epoch's ranking; None without per-epoch test accuracies or a factor to rank."""
    epochs = int(spec.setting("train.epochs") or 0)
    if epochs < 2:
        return None
    done, accuracy = epoch_matrix(trials, curves, epochs)
    model = effect_model(done.assign(**{ACCURACY: accuracy[:, -1]}), spec)
    if model is None:
        return None
    effects = model.effects(accuracy)
    draws = model.draws(accuracy, np.random.default_rng(seed))
    rows = [{"epoch": e + 1, **correlation_row(
        effects[e], effects[-1], None if draws is None else draws[:, e],
        None if draws is None else draws[:, -1])} for e in range(epochs)]
    correlations = pd.DataFrame(rows)
    stable = correlations["spearman"] >= STABLE_RHO
    unstable_after = [e for e, ok in zip(correlations["epoch"], stable, strict=True) if not ok]
    stable_from = (max(unstable_after, default=0) + 1) if stable.iloc[-1] else None
    table = pd.DataFrame([{"epoch": e + 1, "factor": f, "corrected": effects[e, j],
                           "effect": max(0.0, effects[e, j]) if np.isfinite(effects[e, j])
                           else np.nan}
                          for e in range(epochs) for j, f in enumerate(model.factors)])
    return EpochRanking(table, correlations, stable_from, len(done), epochs)


@dataclass
class StudyRanking:
    """One study's final ranking, as a comparison across studies needs it."""

    name: str
    budget: str
    epochs: int | None
    analysis: Analysis
    factors: list[str]  # the model's, in the order of effects and draws
    effects: np.ndarray  # corrected effects
    draws: np.ndarray | None  # (draws, factors) bootstrap redraws; None without replicates


def study_ranking(name: str, trials: pd.DataFrame, spec: StudySpec, analysis: Analysis,
                  seed: int = 0) -> StudyRanking:
    """A study's final effects (its trials' results) with their bootstrap redraws."""
    done = converged(trials)
    model = effect_model(done, spec)
    accuracy = done[[ACCURACY]].to_numpy(float)
    epochs = spec.setting("train.epochs")
    if model is None:
        return StudyRanking(name, spec.setup.get("budget") or "?", epochs, analysis, [],
                            np.zeros(0), None)
    draws = model.draws(accuracy, np.random.default_rng(seed))
    return StudyRanking(name, spec.setup.get("budget") or "?", epochs, analysis, model.factors,
                        model.effects(accuracy)[0], None if draws is None else draws[:, 0])


@dataclass
class CrossStudy:
    """Studies of one design side by side, each compared with the reference study."""

    reference: str
    budgets: dict[str, tuple[str, int | None]]  # study -> its budget and epochs
    effects: pd.DataFrame  # factor, study, rank, effect (+ interval), verdict
    correlations: pd.DataFrame  # study, reference, factors, spearman (+ interval), kendall (...)
    changed: pd.DataFrame  # factor, reference verdict, study, its verdict: where they differ


def compare_rankings(rankings: list[StudyRanking], reference: str) -> CrossStudy:
    """Each study's ranking beside the reference's: effects, rank correlations over the factors
    both rank (bootstrap intervals from both studies' redraws), and the verdicts that differ."""
    by_name = {r.name: r for r in rankings}
    ref = by_name[reference]
    effects = pd.concat([r.analysis.ranking.assign(study=r.name) for r in rankings],
                        ignore_index=True)[["factor", "study", "rank", "effect",
                                            "effect_ci_low", "effect_ci_high", "verdict"]]
    rows, changed = [], []
    ref_verdicts = ref.analysis.ranking.set_index("factor")["verdict"]
    for other in rankings:
        if other.name == reference:
            continue
        common = [f for f in ref.factors if f in other.factors]
        pick_ref = [ref.factors.index(f) for f in common]
        pick = [other.factors.index(f) for f in common]
        draws = (ref.draws[:, pick_ref], other.draws[:, pick]) \
            if ref.draws is not None and other.draws is not None else (None, None)
        rows.append({"study": other.name, "reference": reference, "factors": len(common),
                     **correlation_row(other.effects[pick], ref.effects[pick_ref], *draws)})
        verdicts = other.analysis.ranking.set_index("factor")["verdict"]
        changed += [{"factor": f, "reference verdict": ref_verdicts[f], "study": other.name,
                     "verdict": verdicts[f]}
                    for f in ref_verdicts.index if f in verdicts and verdicts[f] != ref_verdicts[f]]
    return CrossStudy(reference, {r.name: (r.budget, r.epochs) for r in rankings}, effects,
                      pd.DataFrame(rows),
                      pd.DataFrame(changed, columns=["factor", "reference verdict", "study",
                                                     "verdict"]))
