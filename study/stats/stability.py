"""How far a ranking holds, as plain data: the factors' effects after every epoch of one study
(`epoch_ranking`), and in studies of the same design at other budgets (`compare_rankings`), each
ranking compared with a reference one by Spearman's and Kendall's rank correlations with
bootstrap intervals. The report (study.reporting) and its figures consume them.

Every effect here is the fitted model's selection-corrected effect (study.stats.fit), computed
from other accuracies of the same trials:
- per epoch: the test accuracy each trial reported after each epoch (its Optuna intermediate
  values). Only converged trials that trained the baseline's number of epochs and were tested
  after each of them count (a level of the `epochs` factor trains another schedule, so its
  epoch e is not the baseline's);
- the intervals: the model's residual bootstrap, which keeps each seed's noise correlated across
  epochs and gives one seed per point an interval from the replicated baseline. Without a
  replicated point there is no interval: n/a.
The ranking counts as stable from the first epoch after which Spearman's rho with the final
ranking stays at or above STABLE_RHO; the final epoch alone is no such epoch (its rho with itself
is 1 by definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from study.design.spec import StudySpec
from study.stats.fit import fit
from study.stats.frames import ACCURACY, converged
from study.stats.ranking import Analysis

STABLE_RHO = 0.9  # Spearman's rho with the final ranking from which a ranking counts as stable
MIN_FACTORS = 3  # fewer ranked factors: no rank correlation
CORRELATIONS = ("spearman", "kendall")


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
    # the first epoch before the final one from which rho stays >= STABLE_RHO; None where the
    # ranking still changes in the final epoch (or rho is undefined)
    stable_from: int | None
    defined: bool  # whether the rank correlations are defined (three factors with a noise)
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
    model = fit(done.assign(**{ACCURACY: accuracy[:, -1]}), spec)
    if not model.factors:
        return None
    effects = model.effects(accuracy)
    draws = model.residual_redraws(accuracy, np.random.default_rng(seed))
    rows = [{"epoch": e + 1, **correlation_row(
        effects[e], effects[-1], None if draws is None else draws[:, e],
        None if draws is None else draws[:, -1])} for e in range(epochs)]
    correlations = pd.DataFrame(rows)
    stable = correlations["spearman"] >= STABLE_RHO
    unstable_after = [e for e, ok in zip(correlations["epoch"], stable, strict=True) if not ok]
    defined = bool(stable.iloc[-1])  # the final ranking with itself: 1, unless undefined
    first = max(unstable_after, default=0) + 1
    stable_from = first if defined and first < epochs else None  # the final epoch: no claim
    table = pd.DataFrame([{"epoch": e + 1, "factor": f, "corrected": effects[e, j],
                           "effect": max(0.0, effects[e, j]) if np.isfinite(effects[e, j])
                           else np.nan}
                          for e in range(epochs) for j, f in enumerate(model.factors)])
    return EpochRanking(table, correlations, stable_from, defined, len(done), epochs)


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


def study_ranking(name: str, analysis: Analysis, seed: int = 0) -> StudyRanking:
    """A study's final effects (its trials' results) with their bootstrap redraws."""
    model, spec = analysis.model, analysis.model.spec
    accuracy = model.converged[[ACCURACY]].to_numpy(float)
    draws = model.residual_redraws(accuracy, np.random.default_rng(seed)) \
        if model.factors else None
    return StudyRanking(name, spec.setup.get("budget") or "?", spec.setting("train.epochs"),
                        analysis, list(model.factors), model.effects(accuracy)[0],
                        None if draws is None else draws[:, 0])


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
