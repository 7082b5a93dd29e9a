"""A study's trials and training curves as DataFrames: what every statistic and figure reads.

`read_study(study)` gives a `StudyData`: the study's spec (study.design.spec: its factors,
levels and baseline as recorded when it ran, never today's factor registry), one row per trial
(`trials_frame`) and one row per trial and epoch (`curves_frame`). `finished` and `converged`
pick the trials each rule uses:
- a diverged trial is a result of its settings, analysed as its own outcome: it counts in its
  level's divergence rate, not in accuracy (it records chance accuracy, 0.1, which would swamp
  every accuracy comparison and the noise floor); accuracy is compared among converged trials;
  a stalled one (it learned nothing) counts with the diverged ones;
- a failed trial (an exception, an interruption) has no result; it is listed, not analysed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from study.design.spec import StudySpec, study_spec
from study.outcomes import COMPLETE, NO_HEARTBEAT, outcome_of

ACCURACY = "test_accuracy"
# the final network on a fixed sample of training images (study.training.evaluation); trials
# recorded before it existed have none
SAMPLE_ACCURACY = "train_sample_accuracy"


@dataclass
class StudyData:
    """A study as the statistics read it: plain data, no storage."""

    name: str
    spec: StudySpec
    trials: pd.DataFrame  # one row per trial, every state (`trials_frame`)
    curves: pd.DataFrame  # one row per finished trial and epoch (`curves_frame`)


def read_study(study: optuna.Study) -> StudyData:
    spec = study_spec(study)
    return StudyData(study.study_name, spec, trials_frame(study, spec), curves_frame(study, spec))


def trials_frame(study: optuna.Study, spec: StudySpec) -> pd.DataFrame:
    """One row per trial of the study, whatever its state: a column per factor of the spec."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        rows.append({
            "number": t.number, "state": t.state.name,
            "outcome": outcome_of(t.state.name, attrs.get("outcome"), attrs.get("reason")),
            "design_point": attrs.get("design_point"), "seed": attrs.get("seed"),
            **{name: t.params.get(name) for name in spec.factors},
            ACCURACY: t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            SAMPLE_ACCURACY: attrs.get(SAMPLE_ACCURACY), "bn_stats": attrs.get("bn_stats"),
            "wall_time_s": attrs.get("wall_time_s"), "epochs_run": attrs.get("epochs_run"),
            "started": t.datetime_start, "ended": t.datetime_complete,
            "device": attrs.get("device"), "code": attrs.get("code"),
            "reason": attrs.get("reason", NO_HEARTBEAT if t.state.name == "FAIL" else None),
        })
    frame = pd.DataFrame(rows, columns=["number", "state", "outcome", "design_point", "seed",
                                        *spec.factors, ACCURACY, SAMPLE_ACCURACY, "bn_stats",
                                        "wall_time_s", "epochs_run",
                                        "started", "ended", "device", "code", "reason"])
    return frame.astype(_int_columns(spec, "seed", "epochs_run"))


def _int_columns(spec: StudySpec, *others: str) -> dict[str, str]:
    """Nullable integers for int factors and counts: waiting trials have no values yet."""
    ints = [name for name, factor in spec.factors.items() if factor.kind == "int"]
    return dict.fromkeys([*ints, *others], "Int64")


def curves_frame(study: optuna.Study, spec: StudySpec) -> pd.DataFrame:
    """Tidy per-epoch curves: one row per (trial, epoch) of the finished trials, with the test
    accuracy after that epoch (the trial's intermediate value; NaN where none was recorded)."""
    rows = [{"number": t.number, "design_point": t.user_attrs.get("design_point"),
             "seed": t.user_attrs.get("seed"), **{f: t.params.get(f) for f in spec.factors},
             "epoch": epoch + 1, "train_loss": loss, "train_accuracy": accuracy,
             ACCURACY: t.intermediate_values.get(epoch + 1, np.nan)}
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            for epoch, (loss, accuracy) in enumerate(zip(t.user_attrs.get("train_loss", []),
                                                         t.user_attrs.get("train_accuracy", []),
                                                         strict=False))]
    frame = pd.DataFrame(rows, columns=["number", "design_point", "seed", *spec.factors, "epoch",
                                        "train_loss", "train_accuracy", ACCURACY])
    return frame.astype(_int_columns(spec))


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials with a result: converged or diverged."""
    return trials[trials["state"] == "COMPLETE"]


def converged(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials that did not diverge: the ones whose accuracy is compared."""
    return trials[(trials["state"] == "COMPLETE") & (trials["outcome"] == COMPLETE)]


def design_table(trials: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per design point: trials in the study, finished ones, mean and seed std of accuracy; in
    `order` (the design's), then any other points in the order their trials were made."""
    done = finished(trials).groupby("design_point", sort=False)[ACCURACY]
    table = pd.DataFrame({"trials": trials.groupby("design_point", sort=False).size(),
                          "finished": done.count(), "mean": done.mean(), "std": done.std()})
    present = list(trials["design_point"].dropna().unique())
    listed = [p for p in order or [] if p in present]
    table = table.reindex(listed + [p for p in present if p not in listed])
    table["finished"] = table["finished"].fillna(0).astype(int)
    return table.reset_index(names="design_point")


def outcome_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in trials["outcome"].value_counts().items()}
