"""Claiming a waiting trial (study.runs.queue, study.runs.storage), deterministically and fast:
the two guarantees that keep two processes from training one trial, each checked without a race
(the race itself: tests/runs/test_sweep.py::test_concurrent_claims_on_sqlite_never_take_a_trial_
twice, slow)."""

import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from study.runs.queue import _claim, claim_waiting_trial
from study.runs.storage import open_storage


def _queue(tmp_path, trials: int = 3) -> str:
    url = f"sqlite:///{tmp_path}/claims.db"
    study = optuna.create_study(study_name="claims", storage=open_storage(url))
    for number in range(trials):
        study.enqueue_trial({"x": number})
    return url


def _process(url: str) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """What one worker process holds: its own storage (engine, connections) and study."""
    storage = open_storage(url)
    return optuna.load_study(study_name="claims", storage=storage), storage


def test_a_claim_that_another_process_won_is_honoured(tmp_path) -> None:
    url = _queue(tmp_path)
    (first, first_storage), (second, second_storage) = _process(url), _process(url)
    seen = second.get_trials(deepcopy=False, states=(TrialState.WAITING,))  # before the claim
    won = claim_waiting_trial(first, first_storage)
    assert won is not None and won.number == 0
    # the second process still sees trial 0 waiting in its stale list: its claim must fail
    assert _claim(second, second_storage, seen[0]) is None
    taken = claim_waiting_trial(second, second_storage)
    assert taken is not None and taken.number == 1
    states = [t.state for t in first.get_trials(deepcopy=False)]
    assert states == [TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]


def test_a_sqlite_transaction_takes_the_write_lock_when_it_begins(tmp_path) -> None:
    # a claim reads the trial's state, then writes it: the lock must be held from the read on
    url = _queue(tmp_path, trials=1)
    storage = open_storage(url)
    other = sqlite3.connect(tmp_path / "claims.db", timeout=0, isolation_level=None)
    with storage.engine.connect() as connection, connection.begin():
        connection.exec_driver_sql("SELECT count(*) FROM trials").all()  # a read, no write yet
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # another writer cannot start meanwhile
    other.execute("BEGIN IMMEDIATE")  # and can once the transaction has ended
    other.execute("ROLLBACK")
    other.close()
