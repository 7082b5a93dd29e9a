import optuna
from optuna.trial import TrialState

from study.runs.progress import SweepProgress, duration, eta_seconds, format_line, snapshot


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.7):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    running = study.ask()
    running.set_user_attr("design_point", "lr=0.1")
    running.set_user_attr("seed", 2)
    running.set_user_attr("epochs_done", 4)
    study.enqueue_trial({})
    return study


def test_snapshot_counts_every_state_and_the_running_trials_epochs() -> None:
    state = snapshot(_study(), total=10)
    assert (state.total, state.complete, state.failed, state.running) == (10, 2, 1, 1)
    assert state.best == 0.7
    assert state.epochs == [("trial 3 [lr=0.1, seed 2]", 4)]
    assert format_line(state, 95.0) == ("progress: 2/10 trials done (1 failed), 1 running, "
                                        "best test accuracy 0.7000, ETA 1m35s")


def test_eta_follows_this_runs_pace() -> None:
    assert eta_seconds(0, 30.0, 10) is None  # nothing finished yet: no estimate
    assert eta_seconds(4, 60.0, 6) == 90.0
    assert duration(None) == "?" and duration(3725) == "1h02m" and duration(59.6) == "1m00s"


def test_without_a_terminal_it_logs_plain_lines(caplog) -> None:
    study = _study()
    caplog.set_level("INFO", logger="study.runs.progress")
    with SweepProgress(study, total=5, epochs=10, interactive=False):
        study.tell(3, 0.9)
    lines = [r.getMessage() for r in caplog.records if r.name == "study.runs.progress"]
    assert lines == ["progress: 3/5 trials done (1 failed), 0 running, best test accuracy "
                     "0.9000, ETA 0m00s"]
