import numpy as np
import optuna
import pandas as pd
import pytest

from study.outcomes import NO_HEARTBEAT
from study.stats.fit import fit
from study.stats.frames import (
    ACCURACY,
    SAMPLE_ACCURACY,
    design_table,
    outcome_counts,
    read_study,
)
from study.stats.slices import factor_slice, level_labels
from study.stats.synthetic import GRID, OFAT, ofat_table, study_from_table


def test_seed_noise_at_baseline_and_pooled() -> None:
    noise = fit(ofat_table({"activation": -0.03}, noise=0.005, seeds=20), OFAT).noise
    assert 0.003 < noise.baseline_std < 0.007 and noise.baseline_converged == 20
    assert abs(noise.pooled_std - 0.005) < 0.0005
    assert noise.pooled_df == 15 * 19  # 15 design points of 20 seeds each
    # the band's centre is the converged baseline trials' mean: a diverged one (0.1) stays out
    trials = ofat_table({}, noise=0.005, seeds=6, diverged={"baseline": [0]})
    noise, converged_base = fit(trials, OFAT).noise, trials[(trials["design_point"] == "baseline")
                                                            & (trials["outcome"] == "complete")]
    low, high = noise.band()
    assert (low + high) / 2 == pytest.approx(converged_base[ACCURACY].mean()) and low > 0.65
    assert high - low == pytest.approx(4 * converged_base[ACCURACY].std())
    assert noise.baseline_converged == 5


def test_one_seed_has_no_measurable_noise() -> None:
    noise = fit(ofat_table({}, noise=0.01, seeds=1), OFAT).noise
    assert np.isnan(noise.baseline_std) and np.isnan(noise.pooled_std) and noise.pooled_df == 0
    assert noise.band() is None


def test_ofat_slice_keeps_only_trials_at_baseline_for_other_factors() -> None:
    trials = ofat_table({}, noise=0.0, seeds=2)
    part = factor_slice(trials, "channels", OFAT)
    assert sorted(part["channels"].unique()) == [16, 32, 64, 128] and len(part) == 8
    assert (part.drop(columns="channels")[["lr", "activation"]] == [0.05, "relu"]).all().all()
    assert len(factor_slice(trials, "channels", GRID)) == len(trials)  # marginal designs
    # a trial that failed before recording its lr (a nullable column's missing value) is not
    # left out of the other factors' slices, where its failure is counted
    trials["lr"] = trials["lr"].astype("Float64")
    trials.loc[trials["design_point"] == "channels=16", "lr"] = pd.NA
    assert len(factor_slice(trials, "channels", OFAT)) == 8
    assert "channels=16" not in set(factor_slice(trials, "pooling", OFAT)["design_point"])


def test_many_numeric_values_are_binned_into_quartiles() -> None:
    assert level_labels(pd.Series([1, 2, 3])).tolist() == [1, 2, 3]
    binned = level_labels(pd.Series(np.linspace(0.001, 0.5, 40)))
    assert binned.nunique() == 4


def test_design_table_counts_finished_trials_and_ignores_failed_ones() -> None:
    trials = ofat_table({}, noise=0.0, seeds=3)
    trials.loc[0, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    table = design_table(trials).set_index("design_point")
    assert table.loc["baseline", "trials"] == 3 and table.loc["baseline", "finished"] == 2
    assert table["finished"].sum() == len(trials) - 1


def test_a_stored_study_reads_back_as_the_table_it_was_made_from() -> None:
    table = ofat_table({}, noise=0.01, seeds=1, diverged={"baseline": [0]})
    table.loc[3, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    table[SAMPLE_ACCURACY] = table[ACCURACY] + 0.02  # the network on training images
    curves = {0: [0.4, np.nan, 0.1], 1: [0.5, 0.6]}  # trial 0 untested after epoch 2
    study = study_from_table(table, OFAT, "stored", {n: c for n, c in curves.items()})
    lost = study.ask()  # a worker that died: failed, no reason recorded
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    study.ask()  # one still running
    data = read_study(study)
    assert data.name == "stored" and data.spec.to_dict() == OFAT.to_dict()
    trials = data.trials
    assert list(trials.columns) == ["number", "state", "outcome", "design_point", "seed",
                                    *OFAT.factors, ACCURACY, SAMPLE_ACCURACY, "bn_stats",
                                    "wall_time_s", "epochs_run", "started", "ended", "device",
                                    "code", "reason"]
    made = len(table)
    assert trials["number"].tolist() == list(range(made + 2))
    assert trials["state"].tolist() == [*table["state"].tolist(), "FAIL", "RUNNING"]
    assert trials["outcome"].tolist() == [*table["outcome"].tolist(), "failed", "running"]
    for column in ("design_point", "seed", *OFAT.factors):
        assert trials[column].iloc[:made].tolist() == table[column].tolist(), column
    assert {c: str(trials[c].dtype) for c in ("seed", "channels", "batch_size", "epochs_run")} \
        == dict.fromkeys(("seed", "channels", "batch_size", "epochs_run"), "Int64")
    finished = table["state"] == "COMPLETE"
    assert trials[ACCURACY].iloc[:made][finished].tolist() == table[ACCURACY][finished].tolist()
    assert trials[ACCURACY].iloc[made:].isna().all() and pd.isna(trials.loc[3, ACCURACY])
    assert trials[SAMPLE_ACCURACY].iloc[:made][finished].tolist() == pytest.approx(
        table[SAMPLE_ACCURACY][finished].tolist())
    assert (trials["wall_time_s"].iloc[:made] == 1.0).all()
    assert (trials[["device", "code"]].iloc[:made] == ["table", "test"]).all().all()
    reasons = trials["reason"]
    assert reasons.iloc[made] == NO_HEARTBEAT and reasons.drop([3, made]).isna().all()
    assert trials.loc[3, "reason"] == "RuntimeError: planted failure"
    assert trials["started"].notna().all() and trials["ended"].iloc[:-1].notna().all()
    assert pd.isna(trials["ended"].iloc[-1])  # running: not ended
    epochs = data.curves
    assert list(epochs.columns) == ["number", "design_point", "seed", *OFAT.factors, "epoch",
                                    "train_loss", "train_accuracy", ACCURACY]
    assert epochs[["number", "epoch"]].values.tolist()[:5] == [[0, 1], [0, 2], [0, 3], [1, 1],
                                                               [1, 2]]
    assert set(epochs["number"]) == set(table.index[finished])  # finished trials only
    assert epochs[ACCURACY].iloc[:5].tolist()[0] == 0.4 and pd.isna(epochs[ACCURACY].iloc[1])
    assert epochs[ACCURACY].iloc[2:5].tolist() == [0.1, 0.5, 0.6]
    assert epochs["train_loss"].iloc[:3].tolist() == pytest.approx([2.0, 1.75, 1.5])
    first = epochs[epochs["number"] == 1].iloc[0]
    assert (first["design_point"], first["seed"], first["channels"]) == (
        table.loc[1, "design_point"], 0, table.loc[1, "channels"])
    assert str(epochs["channels"].dtype) == "Int64"


def test_what_a_trial_may_lack_reads_as_missing_and_an_empty_study_has_every_column() -> None:
    study = optuna.create_study()
    empty = read_study(study)  # no spec: the legacy reading; no trial yet
    assert list(empty.trials.columns)[:5] == ["number", "state", "outcome", "design_point", "seed"]
    assert "reason" in empty.trials.columns and "train_accuracy" in empty.curves.columns
    assert empty.trials.empty and empty.curves.empty
    interrupted = study.ask()  # an older version's interruption: failed, reason "interrupted"
    interrupted.set_user_attr("reason", "interrupted")
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    short = study.ask()  # one epoch's training accuracy missing, its epochs run recorded
    for key, value in (("train_loss", [2.0, 1.8, 1.6]), ("train_accuracy", [0.3, 0.4]),
                       ("epochs_run", 3)):
        short.set_user_attr(key, value)
    study.tell(short, 0.5)
    study.tell(study.ask(), 0.4)  # nothing recorded but its value
    data = read_study(study)
    assert data.trials["outcome"].tolist() == ["interrupted", "complete", "complete"]
    assert data.trials["epochs_run"].tolist()[1] == 3
    assert data.curves[["number", "epoch", "train_loss", "train_accuracy"]].values.tolist() == [
        [1, 1, 2.0, 0.3], [1, 2, 1.8, 0.4]]


def test_the_design_table_follows_the_design_s_order_and_counts_what_finished() -> None:
    trials = ofat_table({}, noise=0.0, seeds=2)
    trials.loc[trials["design_point"] == "lr=0.1", ["state", "outcome", ACCURACY]] = [
        "FAIL", "failed", None]  # both of its trials
    trials.loc[0, "outcome"] = "diverged"
    order = ["lr=0.1", "ghost", "baseline"]  # a point the study never made is left out
    table = design_table(trials, order)
    points = list(dict.fromkeys(trials["design_point"]))
    assert table["design_point"].tolist() == [
        "lr=0.1", "baseline", *(p for p in points if p not in ("lr=0.1", "baseline"))]
    assert table.iloc[0][["trials", "finished"]].tolist() == [2, 0]
    assert str(table["finished"].dtype) == "int64"
    assert outcome_counts(trials) == {"complete": len(trials) - 3, "failed": 2, "diverged": 1}
