"""Analysis as data: the trials of a study as a DataFrame, and each factor's influence.

Plotting and report writing (study.report) only consume what these functions return.

Rules, applied explicitly:
- A diverged trial counts with test accuracy = chance (0.1): diverging is a result of its settings.
- A failed trial (an exception, an interruption) has no accuracy; it is listed, not analysed.
- In an OFAT study a factor's levels are compared on its own slice: the trials whose other six
  factors are all at the baseline. In grid and optuna studies they are marginal means over all
  finished trials (numeric factors with many distinct values are binned into quartiles).
"""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

from study.config import FACTORS

ACCURACY = "test_accuracy"
MAX_LEVELS = 8  # more distinct values than this (sampled numeric factors) are binned
COLUMNS = ["number", "state", "outcome", "design_point", "seed", *FACTORS, ACCURACY,
           "wall_time_s", "epochs_run", "device", "reason"]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of the study, whatever its state."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        rows.append({
            "number": t.number, "state": t.state.name,
            "outcome": attrs.get("outcome", t.state.name.lower()),
            "design_point": attrs.get("design_point"), "seed": attrs.get("seed"),
            **{name: t.params.get(name) for name in FACTORS},
            ACCURACY: t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            "wall_time_s": attrs.get("wall_time_s"), "epochs_run": attrs.get("epochs_run"),
            "device": attrs.get("device"), "reason": attrs.get("reason"),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["state"] == "COMPLETE"]


def factor_slice(done: pd.DataFrame, factor: str, baseline: dict[str, Any] | None) -> pd.DataFrame:
    """The trials that compare this factor's levels (see the module's rules)."""
    if baseline is None:
        return done
    others = [f for f in FACTORS if f != factor]
    at_baseline = pd.concat([done[f] == baseline[f] for f in others], axis=1).all(axis=1)
    return done[at_baseline]


def level_labels(values: pd.Series) -> pd.Series:
    if values.nunique() <= MAX_LEVELS or not pd.api.types.is_numeric_dtype(values):
        return values
    return pd.qcut(values, 4, duplicates="drop").astype(str)


def level_means(trials: pd.DataFrame, baseline: dict[str, Any] | None) -> pd.DataFrame:
    """Mean, std and count of test accuracy per (factor, level)."""
    done = finished(trials)
    frames = []
    for factor in FACTORS:
        part = factor_slice(done, factor, baseline)
        if part.empty:
            continue
        stats = (part.groupby(level_labels(part[factor]), sort=True)[ACCURACY]
                 .agg(["mean", "std", "count"]).reset_index(names="level"))
        stats.insert(0, "factor", factor)
        frames.append(stats)
    columns = ["factor", "level", "mean", "std", "count"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def seed_noise(trials: pd.DataFrame) -> dict[str, float]:
    """Seed-to-seed std of test accuracy: at the baseline, and pooled over all design points."""
    done = finished(trials)
    by_point = done.groupby("design_point")[ACCURACY]
    base = done.loc[done["design_point"] == "baseline", ACCURACY]
    dof = (by_point.count() - 1).clip(lower=0)
    pooled_var = (by_point.var().fillna(0) * dof).sum() / dof.sum() if dof.sum() else float("nan")
    return {"baseline_std": base.std() if len(base) > 1 else float("nan"),
            "baseline_seeds": len(base), "pooled_std": pooled_var ** 0.5}


def factor_ranking(trials: pd.DataFrame, baseline: dict[str, Any] | None) -> pd.DataFrame:
    """One row per factor, most influential first: effect = best minus worst level mean."""
    means = level_means(trials, baseline)
    noise = seed_noise(trials)["baseline_std"]
    rows = []
    for factor, part in means.groupby("factor", sort=False):
        best, worst = part.loc[part["mean"].idxmax()], part.loc[part["mean"].idxmin()]
        rows.append({
            "factor": factor,
            "levels": len(part),
            "mean_by_level": dict(zip(part["level"].astype(str), part["mean"], strict=True)),
            "best_level": str(best["level"]), "worst_level": str(worst["level"]),
            "effect": best["mean"] - worst["mean"],
            "baseline_seed_std": noise,
            "trials": int(part["count"].sum()),
        })
    ranking = pd.DataFrame(rows)
    if ranking.empty:
        return ranking
    ranking["effect_over_noise"] = ranking["effect"] / ranking["baseline_seed_std"]
    ranking = ranking.sort_values("effect", ascending=False, ignore_index=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))
    return ranking


def outcome_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in trials["outcome"].value_counts().items()}
