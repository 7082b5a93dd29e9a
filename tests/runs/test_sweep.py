import io
import json
import multiprocessing
import os
import random
import re
import signal
import string
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import unquote
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from study.design.factors import FACTORS
from study.design.spec import study_spec
from study.errors import Interrupted, UserError, raise_on_signals
from study.outcomes import NO_HEARTBEAT
from study.runs import queue, workers
from study.runs.queue import (
    WORKER_ID,
    check_size,
    claim_waiting_trial,
    enqueue_missing,
    fail_trials_of,
    next_trial,
    price,
    record_failure,
)
from study.runs.storage import mask_url, open_storage, open_study, quote_password
from study.runs.workers import run_worker
from study.training.data import synthetic_images
from study.training.precision import resolve_precision
from tests.conftest import compose, spec_of

CPU = torch.device("cpu")
TWO_LEVELS = ("sweep.levels.channels=[8,16]", "sweep.levels.activation=[relu,tanh]",
              "sweep.levels.pooling=[max,avg]", "sweep.levels.dropout=[0.5,0.0]",
              "sweep.levels.preprocessing=[standardize,gcn]",
              "sweep.levels.batch_size=[128,64]", "sweep.levels.lr=[0.05,0.1]")
SMALL = ("data=synthetic", "model.channels=8", *TWO_LEVELS)  # 8 design points
# the queue and worker mechanics do not need the baseline's extra seeds: one trial per point
ONE_SEED_EACH = "sweep.baseline_seeds=1"


def finished(outcomes: Counter) -> int:
    """Trials that finished with a result: a network trained on a few hundred images for a step
    or two often learns nothing (stalled), which the queue's tests do not care about."""
    assert set(outcomes) <= {"complete", "stalled", "failed"}
    return outcomes["complete"] + outcomes["stalled"]


def _run_sweep(tmp_path, name: str, *overrides: str):
    """`python -m study.sweep` of the small design at the smoke budget, in tmp_path with its
    storage in tmp_path/study.db; the finished run and its study."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "study.sweep", "budget=smoke", f"storage={storage}",
               f"name={name}", *SMALL, *overrides]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run, optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_sweep_app_records_every_trial_and_writes_the_report(tmp_path) -> None:
    db = tmp_path / "study.db"
    run, study = _run_sweep(tmp_path, "smoke", "sweep.seeds=2", "sweep.workers=2")
    assert len(study.trials) == 7 * 2 + 4  # the baseline: budget smoke's 4 seeds
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    # two worker processes shared the work and trained every trial exactly once
    assert "2 worker processes" in run.stdout + run.stderr and run.stderr == ""
    assert Counter((t.user_attrs["design_point"], t.user_attrs["seed"]) for t in study.trials) == \
        {(p, s): 1 for p in {t.user_attrs["design_point"] for t in study.trials}
         for s in ((0, 1, 2, 3) if p == "baseline" else (0, 1))}
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    [log] = (tmp_path / "results" / "hydra" / "smoke").glob("*/sweep.log")
    trained = [line for line in log.read_text().splitlines() if "][worker " in line and
               re.search(r": (complete|stalled), test accuracy", line)]  # each worker's lines
    assert len(trained) == 18
    # the test accuracy after each epoch, as the dashboard reads it; the last is the value
    assert all(t.intermediate_values == {1: t.value} for t in study.trials)
    trial = study.trials[0]
    assert set(trial.params) == set(FACTORS)  # the unvaried ones at their baselines
    varied = ["activation", "batch_size", "channels", "dropout", "lr", "pooling", "preprocessing"]
    assert {"seed", "design_point", "train_loss", "train_accuracy", "wall_time_s", "device",
            "outcome"} <= set(trial.user_attrs)
    assert f"optuna-dashboard --host 127.0.0.1 --artifact-dir results/artifacts sqlite:///{db}" \
        in run.stdout + run.stderr
    # Not a terminal: progress comes as plain log lines, the last one when all are done.
    assert "progress: 18/18 trials done (0 failed), 0 running" in run.stdout + run.stderr

    out = tmp_path / "reports" / "smoke"
    report = (out / "report.md").read_text()
    ranking = report.split("## Ranking")[1].split("![influence]")[0]
    rows = [line for line in ranking.splitlines() if line.startswith("| ") and "| rank" not in line]
    assert sorted(row.split("|")[2].strip() for row in rows) == varied
    assert "Budget `smoke`" in report and "## The textbook's claim vs this study" in report
    for factor in varied:
        for stem in (f"factor_{factor}", f"curves_{factor}"):
            assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.svg").exists()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 * 7 + 3 and "src=\"http" not in page
    # the small multiples first, one epoch: no ranking over epochs (n/a, said so)
    assert report.index("![overview](overview.png)") < report.index("## Setup")
    assert "## Ranking over training time\n\nn/a: " in report

    # The report is attached to the study: a dashboard note and the figures as artifacts.
    app = optuna_dashboard.wsgi(f"sqlite:///{db}")
    environ = {"PATH_INFO": "/api/studies/1", "REQUEST_METHOD": "GET", "wsgi.errors": io.StringIO()}
    setup_testing_defaults(environ)
    statuses = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["200 OK"], environ["wsgi.errors"].getvalue()[-2000:]
    page = json.loads(body)
    assert "## Ranking" in page["note"]["body"]
    assert all(trial["intermediate_values"] == [{"step": 1, "value": trial["values"][0]}]
               for trial in page["trials"])  # the dashboard's intermediate-value plot
    artifacts = {m.filename for m in optuna.artifacts.get_all_artifact_meta(study)}
    assert {"influence.png", "factor_lr.png", "curves_lr.png"} <= artifacts
    csv = pd.read_csv(tmp_path / "reports" / "smoke" / "trials.csv")
    assert len(csv) == 18 and csv["test_accuracy"].notna().all()

    # the precision auto resolved to is the study's (its spec and every trial), and another one
    # is another study: refused in one line, nothing trained
    precision = resolve_precision("auto", torch.device("cpu"))
    assert study.user_attrs["spec"]["setup"]["train.precision"] == precision
    assert {t.user_attrs["precision"] for t in study.trials} == {precision}
    assert f"augmentation on, precision {precision};" in report
    other = "fp32" if precision == "bf16" else "bf16"
    command = [sys.executable, "-m", "study.sweep", "budget=smoke", f"storage=sqlite:///{db}",
               "name=smoke", *SMALL, "sweep.seeds=2", f"train.precision={other}"]
    refused = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr[-2000:]
    assert refused.stderr.startswith(f"error: study 'smoke' was created with train.precision="
                                     f"{precision}; this run has train.precision={other}")
    assert len(optuna.load_study(study_name="smoke", storage=f"sqlite:///{db}").trials) == 18

    curves = pd.read_csv(tmp_path / "reports" / "smoke" / "curves.csv")  # tidy: trial x epoch
    assert len(curves) == 18 and {"number", "epoch", "train_loss", "test_accuracy", "lr"} <= set(
        curves.columns) and curves["test_accuracy"].notna().all()


def _study(tmp_path, *overrides):
    """A study of the small design in tmp_path/s.db, as the sweep opens it: config, storage,
    study and spec."""
    cfg = compose(*SMALL, ONE_SEED_EACH, f"storage=sqlite:///{tmp_path}/s.db", "name=t",
                  *overrides)
    storage = open_storage(cfg.storage)
    return cfg, storage, *open_study(cfg, storage, spec_of(cfg))


def _stopped_while_claiming(cfg, spec) -> None:
    """In a child process: a worker whose stop signal comes right after it claimed a trial,
    before it has registered the trial as its own."""
    raise_on_signals()
    claim = queue.mark_claimed

    def claim_then_stop(trial: optuna.Trial) -> optuna.Trial:
        os.kill(os.getpid(), signal.SIGTERM)
        return claim(trial)

    queue.mark_claimed = claim_then_stop
    _work_then_exit(cfg, spec)


def _work_then_exit(cfg, spec) -> None:
    """A worker's loop in this child process, which then exits: 143 when it was stopped."""
    storage = open_storage(cfg.storage)
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    try:
        run_worker(cfg, spec, study, storage, synthetic_images(200, 50), torch.device("cpu"))
    except Interrupted:
        os._exit(143)
    os._exit(0)


def _stopped_worker_trials(tmp_path, child_main) -> list[optuna.trial.FrozenTrial]:
    """The trials of a one-seed study after a worker in a spawned child (`child_main(cfg,
    spec)`) was stopped (exit status 143)."""
    cfg, _, study, spec = _study(tmp_path)
    enqueue_missing(study, spec)
    child = multiprocessing.get_context("spawn").Process(target=child_main, args=(cfg, spec))
    child.start()
    child.join(300)
    assert child.exitcode == 143
    return optuna.load_study(study_name="t", storage=cfg.storage).trials


@pytest.mark.slow
def test_a_stop_while_a_trial_is_claimed_records_it_as_interrupted(tmp_path) -> None:
    trials = _stopped_worker_trials(tmp_path, _stopped_while_claiming)
    claimed = [(t.state.name, t.user_attrs.get("reason")) for t in trials
               if t.state != TrialState.WAITING]
    assert claimed == [("FAIL", "interrupted")]  # not left RUNNING for a later run to fail


def _stop_swallowed_then_work(cfg, spec) -> None:
    """In a child process: a stop whose Interrupted something swallowed (a finalizer, a
    library's catch-all), then the worker's loop."""
    raise_on_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
    except Interrupted:
        pass
    _work_then_exit(cfg, spec)


@pytest.mark.slow
def test_a_swallowed_stop_still_stops_the_worker_before_it_claims(tmp_path) -> None:
    """The stop is remembered, not only raised once: the worker claims nothing after it."""
    trials = _stopped_worker_trials(tmp_path, _stop_swallowed_then_work)
    assert trials and all(t.state == TrialState.WAITING for t in trials)


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch) -> None:
    cfg, storage, study, spec = _study(tmp_path, "sweep.levels.lr=[0.05]")
    enqueue_missing(study, spec)
    real_steps = workers.trial_steps

    def train_or_fail(trial_cfg, data, on_epoch=None):
        if trial_cfg.model.activation == "tanh":
            raise RuntimeError("simulated CUDA error")
        return real_steps(trial_cfg, data, on_epoch)

    monkeypatch.setattr(workers, "trial_steps", train_or_fail)
    outcomes = run_worker(cfg, spec, study, storage, synthetic_images(200, 50), CPU)
    assert finished(outcomes) == 6 and outcomes["failed"] == 1
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["design_point"] for t in failed] == ["activation=tanh"]
    assert failed[0].user_attrs["reason"] == "RuntimeError: simulated CUDA error"
    # The next run re-enqueues only the failed design point.
    assert enqueue_missing(study, spec) == 1


@pytest.mark.slow
def test_two_trials_at_once_give_the_results_of_one_at_a_time(tmp_path) -> None:
    images, values = synthetic_images(200, 50), {}
    for streams in (1, 2):
        (tmp_path / str(streams)).mkdir()
        cfg, storage, study, spec = _study(tmp_path / str(streams), f"sweep.streams={streams}")
        enqueue_missing(study, spec)
        assert finished(run_worker(cfg, spec, study, storage, images, CPU)) == 8
        trials = study.get_trials()
        values[streams] = {t.user_attrs["design_point"]: t.value for t in trials}
        at_once = max(sum(t.datetime_start <= u.datetime_start < t.datetime_complete
                          for t in trials) for u in trials)
        assert at_once == streams
    assert values[2] == values[1]


@pytest.mark.slow
def test_a_worker_trains_the_design_and_creates_no_other_trial(tmp_path) -> None:
    """With the queue empty a worker enqueues the design's missing trials (a batch at a time),
    never a sampler-made trial, and once the design is done it ends without creating any."""
    cfg, storage, study, spec = _study(tmp_path)
    outcomes = run_worker(cfg, spec, study, storage, synthetic_images(100, 20), CPU)
    assert finished(outcomes) == spec.total_trials()
    assert sorted((t.user_attrs["design_point"], t.user_attrs["seed"]) for t in study.trials) \
        == sorted((p.id, s) for p in spec.points() for s in spec.point_seeds(p.id))
    assert run_worker(cfg, spec, study, storage, synthetic_images(100, 20), CPU) == Counter()
    assert len(study.trials) == spec.total_trials()


@pytest.mark.slow
def test_optuna_design_runs_n_trials_from_the_sampler(tmp_path) -> None:
    cfg, storage, study, spec = _study(tmp_path, "sweep=optuna", "sweep.n_trials=3",
                                 "sweep.sampler=random")
    outcomes = run_worker(cfg, spec, study, storage, synthetic_images(200, 50), CPU)
    assert sum(outcomes.values()) == 3 and len(study.trials) == 3
    params = study.trials[0].params
    assert params["activation"] in ("relu", "tanh") and 8 <= params["channels"] <= 16
    assert [t.user_attrs["seed"] for t in study.trials] == [0, 1, 2]


@pytest.mark.slow
def test_the_queue_is_filled_a_batch_at_a_time_and_a_failure_is_retried_by_the_next_run(
        tmp_path, monkeypatch) -> None:
    _, storage, study, spec = _study(tmp_path, "sweep.seeds=2")
    monkeypatch.setattr(queue, "ENQUEUE_BATCH", 3)
    assert price(study, spec).startswith("16 of 16 trials to run, ")
    assert enqueue_missing(study, spec, 3) == 3
    space = spec.distributions()
    taken = []
    for _ in range(4):  # the fourth claim finds the queue dry and enqueues the next three
        taken.append(next_trial(study, storage, spec, space))
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 2 and len({(t.user_attrs["design_point"], t.user_attrs["seed"])
                                      for t in taken}) == 4
    record_failure(study, taken[0], "RuntimeError: planted")

    def finish(trial) -> None:
        trial.set_user_attr("wall_time_s", 2.0)
        study.tell(trial, 0.5)

    for trial in taken[1:]:
        finish(trial)
    while (trial := next_trial(study, storage, spec, space)) is not None:  # the rest of the run
        finish(trial)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 15  # no retry in the run
    assert price(study, spec).startswith("1 of 16 trials to run, ")
    assert enqueue_missing(study, spec, 3) == 1  # the next run retries it
    assert " at " in price(study, spec) and "s per baseline trial (median of 15 " in \
        price(study, spec)


def test_a_design_larger_than_max_trials_is_refused() -> None:
    spec = spec_of(compose(*SMALL, "sweep.seeds=3"))
    total = spec.total_trials()
    check_size(spec, total)
    with pytest.raises(UserError, match=rf"the design has {total} trials \(8 points x 3 seed.*"
                                        rf"pass sweep.max_trials={total} to run it"):
        check_size(spec, total - 1)


def test_enqueue_is_idempotent(tmp_path) -> None:
    _, _, study, spec = _study(tmp_path, "sweep.seeds=2")
    assert enqueue_missing(study, spec) == len(spec.points()) * 2 == 16
    assert enqueue_missing(study, spec) == 0


@pytest.mark.parametrize("password", ["s3cret", "s3@cr@et", "s3:c/r?et@", "p%40ss"])
def test_a_password_is_masked_whatever_characters_it_holds(password: str) -> None:
    """A raw '@' (e.g. from ${oc.env:...}) made SQLAlchemy take the password's tail for the
    host, which the mask then printed."""
    for url, masked in ((f"postgresql://ann:{password}@db.example:5432/study?sslmode=require",
                         "postgresql://ann:***@db.example:5432/study?sslmode=require"),
                        (f"postgresql://ann@db.example/study?password={password}",
                         "postgresql://ann@db.example/study?password=***")):
        assert mask_url(url) == masked
    quoted = make_url(quote_password(f"postgresql://ann:{password}@db.example/study"))
    assert (quoted.password, quoted.host) == (password.replace("%40", "@") if "%" in password
                                              else password, "db.example")


PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


@pytest.mark.parametrize("form", ["host:port/db?query", "host/db"])
def test_any_printable_password_is_parsed_whole_and_never_shown(form: str) -> None:
    """400 random passwords of 1-16 printable characters, as a user or an environment variable
    writes them (unencoded): the URL splits at the '@' before the host, the password reaches
    the database whole, and the mask shows none of it."""
    rng = random.Random(0)
    tail, masked_tail = (("db.example:5432/study?sslmode=require", "db.example:5432/study?"
                          "sslmode=require") if form == "host:port/db?query"
                         else ("db.example/study", "db.example/study"))
    for _ in range(400):
        password = "".join(rng.choices(PRINTABLE, k=rng.randint(1, 16)))
        url = f"postgresql://ann:{password}@{tail}"
        assert mask_url(url) == f"postgresql://ann:***@{masked_tail}", password
        parsed = make_url(quote_password(url))
        assert (parsed.username, parsed.password, parsed.host) == (
            "ann", unquote(password), "db.example"), password


def test_storage_errors_are_one_line_and_hide_the_password() -> None:
    assert mask_url("postgresql://ann:s3cret@db.example/study") == \
        "postgresql://ann:***@db.example/study"
    for url in ("not a url", "postgresql://ann:s3cret@127.0.0.1:1/none"):
        with pytest.raises(Exception) as error:
            open_storage(url)
        assert "s3cret" not in str(error.value) and "\n" not in str(error.value)


def _claim_all(url: str, claimed: multiprocessing.Queue) -> None:
    storage = open_storage(url)
    study = optuna.load_study(study_name="race", storage=storage)
    numbers = []
    while (trial := claim_waiting_trial(study, storage)) is not None:
        numbers.append(trial.number)
    claimed.put(numbers)


@pytest.mark.heavy
@pytest.mark.slow
def test_concurrent_claims_on_sqlite_never_take_a_trial_twice(tmp_path) -> None:
    """Optuna's claim reads the trial's state, then writes it; on SQLite without BEGIN IMMEDIATE
    three processes claiming 60 trials took some twice (28 of 300 in a trial run with four)."""
    url = f"sqlite:///{tmp_path}/race.db"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for number in range(60):
        study.enqueue_trial({"x": number})
    context = multiprocessing.get_context("spawn")
    claimed = context.Queue()
    processes = [context.Process(target=_claim_all, args=(url, claimed)) for _ in range(3)]
    for process in processes:
        process.start()
    numbers = [n for _ in processes for n in claimed.get(timeout=300)]
    for process in processes:
        process.join()
    assert sorted(numbers) == list(range(60))


@pytest.mark.slow
def test_trials_of_a_dead_worker_are_failed_and_enqueued_again(tmp_path) -> None:
    _, storage, study, spec = _study(tmp_path)
    enqueue_missing(study, spec)
    held = claim_waiting_trial(study, storage)
    assert held.user_attrs["worker"] == WORKER_ID
    fail_trials_of(study, storage, "another-host:1", "worker process 1 died (exit code -9)")
    assert study.trials[held.number].state == TrialState.RUNNING  # not that worker's trial
    fail_trials_of(study, storage, WORKER_ID, "worker process 7 died (exit code -9)")
    failed = study.trials[held.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["reason"] == "worker process 7 died (exit code -9)"
    assert enqueue_missing(study, spec) == 1


@pytest.mark.heavy
@pytest.mark.slow
def test_hydra_multirun_of_the_train_app_records_one_study(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/study.db"
    command = [sys.executable, "-m", "study.train", "-m", "model.activation=relu,tanh",
               "train.lr=0.01,0.1", "budget=smoke", "data=synthetic", "model.channels=8",
               f"storage={db}"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="train-smoke", storage=db)
    spec = study.user_attrs["spec"]
    assert study.metric_names == ["test_accuracy"]  # the dashboard's name for the objective
    assert spec["design"] == "hydra" and spec["factors"]["activation"]["levels"] == ["relu", "tanh"]
    assert spec["factors"]["epochs"]["baseline"] == 1
    assert spec["factors"]["lr"]["levels"] == [0.01, 0.1]
    assert {(t.params["activation"], t.params["lr"]) for t in study.trials} == \
        {("relu", 0.01), ("relu", 0.1), ("tanh", 0.01), ("tanh", 0.1)}
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    jobs = sorted((tmp_path / "results" / "hydra" / "multirun").glob("*/[0-9]"))
    assert len(jobs) == 4
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        trial = study.trials[metrics["trial"]]
        assert metrics["test_accuracy"] == trial.value
        assert metrics["design_point"] == trial.user_attrs["design_point"]
        resolved = (job / "config.yaml").read_text()
        assert f"activation: {trial.params['activation']}" in resolved and "${" not in resolved

    report = subprocess.run([sys.executable, "-m", "study.report", "name=train-smoke",
                             f"storage={db}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    ranking = (tmp_path / "reports" / "train-smoke" / "report.md").read_text().split(
        "## Ranking")[1].split("![influence]")[0]
    assert "| lr |" in ranking and "| activation |" in ranking and "| dropout |" not in ranking


@pytest.mark.slow
def test_tensorboard_logger_writes_epochs_and_hparams_per_trial(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, storage, study, spec = _study(tmp_path, "logger=tensorboard", f"logger.dir={tmp_path}/tb",
                                 "train.epochs=2")
    enqueue_missing(study, spec)
    run_worker(cfg, spec, study, storage, synthetic_images(200, 50), CPU)
    runs = sorted((tmp_path / "tb" / "t").iterdir())
    assert [r.name for r in runs] == sorted(f"trial-{t.number}" for t in study.trials)
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert losses == pytest.approx(study.trials[int(runs[0].name[6:])].user_attrs["train_loss"])
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(
        events.PluginTagToContent("hparams"))


def _wait_for(db: str, complete: int, process: subprocess.Popen) -> None:
    """Until the study has `complete` finished trials and one running (so a kill lands inside a
    trial), or the sweep process ended; at most five minutes."""
    deadline = time.monotonic() + 300
    while process.poll() is None:
        assert time.monotonic() < deadline, "the sweep trained nothing for five minutes"
        try:
            trials = optuna.load_study(study_name="kill", storage=db).trials
        except KeyError:  # not created yet
            trials = []
        states = Counter(t.state for t in trials)
        if states[TrialState.COMPLETE] >= complete and states[TrialState.RUNNING]:
            return
        time.sleep(0.1)


@pytest.mark.heavy
@pytest.mark.slow
def test_a_killed_sweep_resumes_without_losing_or_repeating_trials(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/study.db"
    command = [sys.executable, "-m", "study.sweep", "budget=smoke", "train.epochs=3",
               "sweep.heartbeat_s=1", f"storage={db}", "name=kill", *SMALL, ONE_SEED_EACH]
    finished: dict[int, float] = {}
    for complete_at_kill in (0, 3):
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for(db, complete_at_kill, process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        trials = optuna.load_study(study_name="kill", storage=db).trials
        assert any(t.state == TrialState.RUNNING for t in trials)  # killed inside a trial
        for t in trials:  # what finished stays finished, with its value
            if t.number in finished:
                assert (t.state, t.value) == (TrialState.COMPLETE, finished[t.number])
            elif t.state == TrialState.COMPLETE:
                finished[t.number] = t.value
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = optuna.load_study(study_name="kill", storage=db).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    points = Counter((t.user_attrs["design_point"], t.user_attrs["seed"]) for t in complete)
    assert len(points) == 8 and set(points.values()) == {1}  # every point once, none twice
    assert all(trials[n].value == v for n, v in finished.items())  # never trained again
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 2 and all("reason" not in t.user_attrs for t in killed)
    assert "no heartbeat" in pd.read_csv(tmp_path / "reports" / "kill" / "trials.csv").query(
        "state == 'FAIL'")["reason"].iloc[0]
    report = (tmp_path / "reports" / "kill" / "report.md").read_text()
    for t in killed:  # listed as failed, with the reason; a trial that never ran differs in nothing
        assert (f"| {t.number} | failed | {t.user_attrs['design_point']} | "
                f"{t.user_attrs['seed']} | {NO_HEARTBEAT} |") in report
    assert "differs" not in report


@pytest.mark.heavy
@pytest.mark.slow
def test_until_decided_looks_adds_seeds_records_every_look_and_a_rerun_continues(tmp_path
                                                                                  ) -> None:
    levels = ("sweep.levels.lr=[0.05,0.1]", *(f"~sweep.levels.{name}" for name in (
        "channels", "activation", "pooling", "dropout", "preprocessing", "batch_size")))
    until = ("sweep.until=decided", "sweep.looks=2", "sweep.baseline_seeds=2",
             "sweep.max_minutes=10", "analysis.practical_effect=0.5")  # a threshold noise clears
    run, study = _run_sweep(tmp_path, "until", *levels, *until)
    spec = study_spec(study)
    assert spec.looks == 2 and [e["look"] for e in spec.look_log] == [1, 2]
    assert spec.look_log[0]["added"] and spec.look_log[1]["stop"]  # lr=0.1 has one seed at first
    # the first look (one seed per point) cannot claim, so the second tests at all of 5%
    assert all(e["alpha"] == 0.05 for e in spec.look_log)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == spec.total_trials() > 3 and all(t.state == TrialState.COMPLETE
                                                         for t in trials)
    assert Counter((t.user_attrs["design_point"], t.user_attrs["seed"]) for t in trials) == \
        Counter((p.id, s) for p in spec.points() for s in spec.point_seeds(p.id))
    report = (tmp_path / "reports" / "until" / "report.md").read_text()
    assert "## Adaptive replication" in report and "| 2 of 2 |" in report
    assert "| 1 of 2 | 3 | 5% |" in report  # tested at
    added = sum(len(seeds) for seeds in spec.added_seeds.values())
    assert added == sum(spec.look_log[0]["added"].values()) == len(trials) - 3
    assert f"added by the looks: {added} seeds at" in report
    assert "look 1 (3 trials, tested at 0.05)" in run.stdout + run.stderr
    _run_sweep(tmp_path, "until", *levels, *until)  # no trial to add: the same last look
    again = study_spec(study)
    assert [e["look"] for e in again.look_log] == [1, 2] and len(study.trials) == len(trials)


def test_a_worker_stops_after_max_failures(tmp_path, monkeypatch) -> None:
    cfg, storage, study, spec = _study(tmp_path, "sweep.max_failures=2")
    enqueue_missing(study, spec)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(workers, "trial_steps", out_of_memory)
    assert run_worker(cfg, spec, study, storage, synthetic_images(100, 20), CPU) == \
        Counter({"failed": 2})
    states = Counter(t.state for t in study.trials)
    assert states == {TrialState.FAIL: 2, TrialState.WAITING: 6}  # the rest is left queued
    assert study.trials[0].user_attrs["reason"].startswith("OutOfMemoryError: CUDA out of")
