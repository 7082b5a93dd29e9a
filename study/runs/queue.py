"""The study's trial queue, shared by every worker process on every machine: it lives in the
study storage.

Fixed designs (ofat, grid) put every (design point, seed) into the queue with Optuna's
`enqueue_trial` (`enqueue_missing`, under the study lock, the most expensive points first). A
worker takes the next waiting trial (`next_trial`: a claim that sets it running, or for a
sampled design a new trial from the sampler), records its heartbeat while it trains
(`Heartbeat`), and records the trial's failure with its reason (`record_failure`); a train-app
job records itself as a finished trial (`record_job`). Each claimed trial records which process
trains it and with which code.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import threading
from collections import Counter
from datetime import datetime

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from study.design.cost import point_costs
from study.design.designs import DesignPoint
from study.design.factors import untrainable
from study.design.spec import StudySpec, code_version
from study.errors import UserError
from study.outcomes import FAILED, INTERRUPTED
from study.runs.storage import study_lock
from study.training.engine import TrialResult

log = logging.getLogger("study.runs.queue")
CLAIMED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # recorded on each trial a process claims
ENQUEUE_BATCH = 100  # trials put in the queue at a time: a large design starts in seconds


def _key(trial: optuna.trial.FrozenTrial) -> tuple[object, object]:
    return trial.user_attrs.get("design_point"), trial.user_attrs.get("seed")


def missing_trials(trials: list[optuna.trial.FrozenTrial], spec: StudySpec
                   ) -> list[tuple[DesignPoint, int]]:
    """Every (design point, seed) of a fixed design that none of the study's `trials` has done,
    runs or waits for, the most expensive points first (workers take the queue in order: the
    longest trials start first and the run ends with short ones, not with one long trial and
    idle workers)."""
    claimed = Counter(_key(t) for t in trials if t.state in CLAIMED)
    costs = point_costs(spec)
    return [(point, seed) for point in sorted(spec.points(), key=lambda p: -costs.get(p.id, 1.0))
            for seed in spec.point_seeds(point.id) if claimed[(point.id, seed)] == 0]


def enqueue_missing(study: optuna.Study, spec: StudySpec, limit: int | None = None,
                    retry: bool = True) -> int:
    """Enqueue the missing trials (`missing_trials`) never tried before, at most `limit` of
    them, and with `retry` every one that failed before; return how many. A run starts with a
    batch and its retries; workers enqueue the next batch, without retries, when the queue runs
    dry (`next_trial`): a large design starts in seconds, stopping it leaves at most a batch
    waiting, and a trial that fails is not tried again within the run."""
    trials = study.get_trials(deepcopy=False)  # one read for both
    missing = missing_trials(trials, spec)
    failed = {_key(t) for t in trials if t.state == TrialState.FAIL}
    new = [(point.id, seed) for point, seed in missing if (point.id, seed) not in failed]
    chosen = set(new[:limit]) | (failed if retry else set())
    enqueued = [(point, seed) for point, seed in missing if (point.id, seed) in chosen]
    for point, seed in enqueued:
        study.enqueue_trial(point.params, user_attrs={"design_point": point.id, "seed": seed})
    return len(enqueued)


def check_size(spec: StudySpec, max_trials: int) -> None:
    """UserError when the design has more trials than `max_trials` (sweep.max_trials)."""
    if (total := spec.total_trials()) > max_trials:
        shape = (f"{len(spec.points())} points x {len(spec.seeds)} seed(s)" if spec.plan.fixed
                 else "sweep.n_trials")
        raise UserError(f"the design has {total} trials ({shape}), more than "
                        f"sweep.max_trials={max_trials}: use fewer levels or seeds, or pass "
                        f"sweep.max_trials={total} to run it")


def price(study: optuna.Study, spec: StudySpec) -> str:
    """What the trials still to run cost, in words: their number, their work in baseline
    trials (the cost model: study.design.cost), and the time at this study's measured seconds
    per baseline trial once a trial has finished."""
    costs, trials = point_costs(spec), study.get_trials(deepcopy=False)
    if spec.plan.fixed:
        missing = missing_trials(trials, spec)
        to_run, work = len(missing), sum(costs.get(point.id, 1.0) for point, _ in missing)
    else:
        to_run = max(0, spec.n_trials - sum(t.state in CLAIMED for t in trials))
        work = float(to_run)  # sampled points: cost unknown until drawn, the baseline's assumed
    per_baseline, finished = seconds_per_baseline(trials, costs)
    when = (f"; about {work * per_baseline / 60:.0f} min of training at {per_baseline:.1f} s "
            f"per baseline trial (median of {finished} finished here)" if per_baseline else
            "; its time is estimated once a trial has finished")
    return (f"{to_run} of {spec.total_trials()} trials to run, {work:.1f} baseline trials of "
            f"work{when}")


def seconds_per_baseline(trials: list[optuna.trial.FrozenTrial], costs: dict[str, float]
                         ) -> tuple[float | None, int]:
    """The median training seconds of the finished trials per baseline trial of work (`costs`:
    study.design.cost; None before one finished), and how many finished trials it is over."""
    times = [t.user_attrs["wall_time_s"] / costs.get(t.user_attrs.get("design_point"), 1.0)
             for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("wall_time_s")]
    return (statistics.median(times) if times else None), len(times)


def fail_untrainable(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[str]:
    """Record as failed, with the reason, every waiting trial whose queued values cannot be
    trained (a study poisoned by an older version, e.g. lr=nan), so that a rerun repairs the
    study instead of crashing on it: its design queues the point again with the values of its
    spec. Returns the reasons."""
    reasons = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        problem = untrainable(frozen.system_attrs.get("fixed_params", {}))
        if problem and (trial := _claim(study, storage, frozen)) is not None:
            record_failure(study, trial, problem)
            reasons.append(problem)
    return reasons


def claim_waiting_trial(study: optuna.Study, storage: optuna.storages.BaseStorage
                        ) -> optuna.Trial | None:
    """Take the next enqueued trial, as Study.ask does, but never create a new one: a fixed
    design must not grow sampler-made trials when its queue runs dry."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if (trial := _claim(study, storage, frozen)) is not None:
            return mark_claimed(trial)
    return None


def _claim(study: optuna.Study, storage: optuna.storages.BaseStorage,
           frozen: optuna.trial.FrozenTrial) -> optuna.Trial | None:
    """Set a waiting trial running; None when another process claimed it first."""
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
    if storage.get_heartbeat_interval():
        # before the claim: Optuna never counts a running trial without a heartbeat as
        # stale, so a worker killed between claim and first beat would hold it forever
        storage.record_heartbeat(trial_id)
    try:
        if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
            return optuna.Trial(study, trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    return None


def mark_claimed(trial: optuna.Trial) -> optuna.Trial:
    """Record on the trial which process trains it and with which code: several machines or
    versions may share a study."""
    trial.set_user_attr("worker", WORKER_ID)
    trial.set_user_attr("code", code_version())
    return trial


def failures_since(study: optuna.Study, start: datetime) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.datetime_complete is not None and t.datetime_complete >= start]


def record_job(study: optuna.Study, storage: optuna.storages.BaseStorage, spec: StudySpec,
               job: StudySpec, design_point: str, result: TrialResult | None,
               reason: str = "") -> int:
    """Record one trained job (the train app; its own spec `job`) as a finished trial of the
    study with `spec`; return its number. Without a result it is a failed trial with the
    reason."""
    attrs = {"design_point": design_point, "seed": job.seeds[0], "worker": WORKER_ID,
             "code": code_version()}
    curve: dict[int, float] = {}
    if result is None:
        state, value = TrialState.FAIL, None
        attrs |= {"outcome": INTERRUPTED if reason == INTERRUPTED else FAILED, "reason": reason}
    else:
        state, value = TrialState.COMPLETE, result.test_accuracy
        attrs |= {k: v for k, v in result.as_dict().items()
                  if k not in ("test_accuracy", "epoch_test_accuracy")}
        curve = result.epoch_test_accuracy
    frozen = optuna.trial.create_trial(state=state, value=value, params=job.baseline,
                                       distributions=spec.distributions(), user_attrs=attrs,
                                       intermediate_values=curve)
    trial_id = storage.create_new_trial(storage.get_study_id_from_name(study.study_name),
                                        template_trial=frozen)
    return storage.get_trial_number_from_id(trial_id)


def record_failure(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Record the trial as failed with `reason`, or as interrupted when the reason is
    INTERRUPTED (study.outcomes)."""
    trial.set_user_attr("outcome", INTERRUPTED if reason == INTERRUPTED else FAILED)
    trial.set_user_attr("reason", reason)
    study.tell(trial, state=TrialState.FAIL)


def fail_trials_of(study: optuna.Study, storage: optuna.storages.BaseStorage, worker: str,
                   reason: str) -> None:
    """Record the trials a dead worker was running as failed, so a rerun trains them again."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.user_attrs.get("worker") == worker:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
            record_failure(study, optuna.Trial(study, trial_id), reason)


def next_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, spec: StudySpec,
               space: dict[str, BaseDistribution]) -> optuna.Trial | None:
    """The next waiting trial (a fixed design's point, or one queued again); a sampled design
    then asks its sampler for new ones until the study holds n_trials."""
    trial = claim_waiting_trial(study, storage)
    if trial is None and spec.plan.fixed:
        with study_lock(storage, study.study_name):  # one process enqueues the next batch
            added = enqueue_missing(study, spec, ENQUEUE_BATCH, retry=False)
        trial = claim_waiting_trial(study, storage) if added else None
    if trial is None and spec.plan.sampled and \
            len(study.get_trials(deepcopy=False, states=CLAIMED)) < spec.n_trials:
        trial = mark_claimed(study.ask())
        trial.set_user_attr("design_point", f"sample {trial.number}")
        trial.set_user_attr("seed", spec.seeds[0] + trial.number)
    if trial is not None:
        for name, distribution in space.items():
            suggest(trial, name, distribution)
    return trial


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> None:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, optuna.distributions.IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


class Heartbeat:
    """Records the heartbeat of the trials this worker trains every `interval` seconds, so that a
    later run tells a killed worker's trial (no heartbeat for the grace period) from a live one."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.RDBStorage) -> None:
        self.storage, self.trial_ids = storage, frozenset()
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.interval = storage.get_heartbeat_interval()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        if self.interval:
            self.thread.start()

    def _id(self, trial: optuna.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def follow(self, trial: optuna.Trial) -> None:
        trial_id = self._id(trial)
        self.trial_ids |= {trial_id}  # a new set: the beating thread reads it without a lock
        if self.interval:
            self.storage.record_heartbeat(trial_id)

    def unfollow(self, trial: optuna.Trial) -> None:
        self.trial_ids -= {self._id(trial)}

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as error:  # a missed beat is retried; training goes on
                    log.warning("heartbeat of trial id %d failed: %s", trial_id, error)
