"""Run a design and record every trial in an Optuna study: `python -m study.sweep`.

The run's config makes a study spec (study.spec); `open_study` creates the study with it or
continues the study of that name when the identities match (growing it by new seeds or levels), and
refuses otherwise. The design's trials wait in the study's queue (study.storage); `sweep.workers`
worker processes (default: `auto_workers`) each load the data onto the device once and then take
and train trial after trial, `sweep.streams` of them at once (study.streams). Because the queue
lives in the storage, a second process or machine started with the same `name` and `storage` shares
the work, and re-running the command trains only what is missing. The optuna design asks the
configured sampler until `sweep.n_trials` trials exist. A worker that crashes leaves the others
running; a trial whose worker died (no heartbeat for three `sweep.heartbeat_s`) is failed and
queued again.

Each trial records: params = the studied factors; user attributes = seed, design_point, outcome
(complete | diverged | failed), per-epoch train_loss/train_accuracy, wall_time_s, device, worker,
code version, and for failures the reason; intermediate values = the test accuracy after each
epoch (step = epoch), which optuna-dashboard plots. The sweep ends by writing the report and
printing the optuna-dashboard command.

    python -m study.sweep                                  # the textbook's OFAT study
    python -m study.sweep sweep=grid budget=full storage=postgresql://user@host/db
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import platform
import socket
import threading
import time
from collections import Counter
from collections.abc import Generator
from datetime import datetime
from pathlib import Path

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from study.cli import run_app
from study.config import check_batch_sizes
from study.data import DeviceData, Images, load_images, to_device
from study.engine import device_name, pick_device, resolve_engine, trial_steps, worker_device
from study.errors import Interrupted, StudyStopped, one_line, raise_on_signals
from study.paths import REPORTS, check_outputs
from study.progress import SweepProgress
from study.spec import StudySpec, spec_for_run, stored_spec
from study.storage import (
    CLAIMED,
    INTERRUPTED,
    claim_waiting_trial,
    enqueue_missing,
    fail_trials_of,
    fail_untrainable,
    failures_since,
    make_sampler,
    mark_claimed,
    mask_url,
    open_storage,
    open_study,
    record_failure,
    sqlite_file,
    study_lock,
)
from study.streams import TrialStreams
from study.tensorboard_log import TrialLog

log = logging.getLogger("study.sweep")
GPU_WORKERS = 4  # worker processes per GPU by default (study.bench measures other counts)


def next_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, spec: StudySpec,
               space: dict[str, BaseDistribution]) -> optuna.Trial | None:
    """The next waiting trial (a fixed design's point, or one queued again); a sampled design
    then asks its sampler for new ones until the study holds n_trials."""
    trial = claim_waiting_trial(study, storage)
    if trial is None and spec.kind.sampled and \
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

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        self.storage, self.trial_ids = storage, frozenset()
        self.interval = storage.get_heartbeat_interval()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        if self.interval:
            self.thread.start()

    def follow(self, trial_id: int) -> None:
        self.trial_ids |= {trial_id}  # a new set: the beating thread reads it without a lock
        if self.interval:
            self.storage.record_heartbeat(trial_id)

    def unfollow(self, trial_id: int) -> None:
        self.trial_ids -= {trial_id}

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as error:  # a missed beat is retried; training goes on
                    log.warning("heartbeat of trial id %d failed: %s", trial_id, error)


def run_worker(cfg: DictConfig, spec: StudySpec, study: optuna.Study,
               storage: optuna.storages.BaseStorage, images: Images, device: torch.device
               ) -> Counter:
    """Train trials, sweep.streams at a time, until the design is exhausted or until
    sweep.max_failures trials have failed since this worker started; return how many ended in
    each outcome."""
    space = spec.distributions()
    prepared: dict[str, DeviceData] = {}  # preprocessing -> data on the device, made once
    outcomes: Counter = Counter()
    start, heartbeat = datetime.now(), Heartbeat(storage)
    trials, queue_dry = TrialStreams(cfg.sweep.streams, device), False
    try:
        while True:
            while trials.has_room() and not queue_dry:
                if len(failures_since(study, start)) >= cfg.sweep.max_failures or (
                        trial := next_trial(study, storage, spec, space)) is None:
                    queue_dry = True
                    break
                heartbeat.follow(trial._trial_id)
                trials.start(trial, train_one(cfg, spec, study, trial, images, device, prepared))
            if not trials.running:
                return outcomes
            for trial, outcome in trials.turn():
                heartbeat.unfollow(trial._trial_id)
                outcomes[outcome] += 1
    except Interrupted:
        for other in trials.running:  # the interrupted one recorded itself and left `running`
            record_failure(study, other.key, INTERRUPTED)
        raise
    finally:
        heartbeat.stop.set()


def train_one(cfg: DictConfig, spec: StudySpec, study: optuna.Study, trial: optuna.Trial,
              images: Images, device: torch.device, prepared: dict[str, DeviceData]
              ) -> Generator[None, None, str]:
    """Train one claimed trial, a step per iteration, and tell the study its result; return
    its outcome."""
    seed = trial.user_attrs["seed"]
    trial_cfg = spec.trial_config(cfg, trial.params, seed)
    label = f"trial {trial.number} [{trial.user_attrs['design_point']}, seed {seed}]"
    board = (TrialLog(cfg.logger.dir, study.study_name, f"trial-{trial.number}")
             if cfg.logger.kind == "tensorboard" else None)

    def on_epoch(epoch: int, loss: float, accuracy: float, test_accuracy: float | None) -> None:
        if test_accuracy is not None:  # the dashboard's intermediate values, step = epoch
            trial.report(test_accuracy, epoch + 1)
        trial.set_user_attr("epochs_done", epoch + 1)  # for the progress display
        if board:
            board.epoch(epoch, loss, accuracy, test_accuracy)

    try:
        preprocessing = trial_cfg.data.preprocessing
        if preprocessing not in prepared:
            prepared[preprocessing] = to_device(images, preprocessing, device,
                                                cfg.data.zca_epsilon)
            if device.type == "cuda":  # trials on other streams will read it
                torch.cuda.current_stream(device).synchronize()
        result = yield from trial_steps(trial_cfg, prepared[preprocessing], on_epoch=on_epoch)
    except Interrupted:
        record_failure(study, trial, INTERRUPTED)
        raise
    except Exception as error:  # a failing trial is recorded and the sweep goes on
        log.exception("%s failed", label)
        record_failure(study, trial, f"{type(error).__name__}: {error}")
        return "failed"
    for key, value in result.as_dict().items():
        if key not in ("test_accuracy", "epoch_test_accuracy"):  # value, intermediate values
            trial.set_user_attr(key, value)
    study.tell(trial, result.test_accuracy)
    if board:
        board.finish(trial.params, seed, result.test_accuracy, result.outcome)
    log.info("%s: %s, test accuracy %.4f (%.1f s)", label, result.outcome,
             result.test_accuracy, result.wall_time_s)
    return result.outcome


def auto_workers(cfg: DictConfig, device: torch.device) -> int:
    """sweep.workers, else one process on the CPU (it already uses every core) and GPU_WORKERS
    per GPU: a small CNN's trial leaves a GPU mostly idle between its kernels."""
    if cfg.sweep.workers is not None:
        return cfg.sweep.workers
    return GPU_WORKERS * torch.cuda.device_count() if device.type == "cuda" else 1


def worker_process(config: dict, index: int, count: int, quiet: bool) -> None:
    """Entry point of a spawned worker: load the data once, then train until the queue is dry.
    `quiet`: log warnings only (a live progress display shows the rest)."""
    raise_on_signals()
    cfg = OmegaConf.create(config)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format=f"[%(asctime)s][worker {index}][%(levelname)s] - %(message)s")
    device = worker_device(index, count)
    storage = open_storage(cfg.storage, cfg.sweep.heartbeat_s)
    study = optuna.load_study(study_name=cfg.name, storage=storage,
                              sampler=make_sampler(cfg, worker=index))
    spec = stored_spec(cfg.name, study.user_attrs)
    try:
        run_worker(cfg, spec, study, storage, load_images(cfg.data), device)
    except Interrupted as stop:
        raise SystemExit(stop.exit_code) from None


def run_workers(cfg: DictConfig, study: optuna.Study, storage: optuna.storages.BaseStorage,
                count: int, quiet: bool = False) -> None:
    """Run `count` worker processes and wait for all of them. Spawned, because CUDA does not
    survive fork. A worker that dies leaves the others running; its claimed trial is failed."""
    context = multiprocessing.get_context("spawn")
    config = OmegaConf.to_container(cfg, resolve=True)
    processes = [context.Process(target=worker_process, args=(config, index, count, quiet),
                                 name=f"worker-{index}") for index in range(count)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except Interrupted as stop:
        for process in processes:  # they record their trials (Ctrl-C reached them too)
            if process.is_alive():
                os.kill(process.pid, stop.signum)
        for process in processes:
            process.join(timeout=60)
        fail_dead_workers(study, storage, processes, stopped=stop)
        raise
    fail_dead_workers(study, storage, processes)


def fail_dead_workers(study: optuna.Study, storage: optuna.storages.BaseStorage,
                      processes: list[multiprocessing.Process],
                      stopped: Interrupted | None = None) -> None:
    """Record as failed the trials of workers that exited without recording them."""
    for process in processes:
        if stopped is not None and process.exitcode == stopped.exit_code:
            continue  # it recorded its own trials as interrupted
        if process.exitcode != 0:
            reason = f"worker process {process.pid} died (exit code {process.exitcode})"
            log.error("%s", reason)
            fail_trials_of(study, storage, f"{socket.gethostname()}:{process.pid}", reason)


def run_sweep(cfg: DictConfig) -> None:
    # the report's plotting and statistics libraries take seconds to import: only at the end,
    # so that a bad command line fails fast
    from study.report import write_report

    device = pick_device()
    resolve_engine(cfg.train.compile, device)  # a mode this device lacks is an error now
    check_outputs(cfg, sqlite_file(cfg.storage), report=True)  # now, not after the training
    images = load_images(cfg.data)  # before the storage, so that bad data writes nothing
    check_batch_sizes(cfg, len(images.y_train))
    storage = open_storage(cfg.storage, cfg.sweep.heartbeat_s)
    run_spec = spec_for_run(cfg, cfg.sweep.design, images.fingerprint, created={
        "device": device_name(device), "data_source": images.source, "torch": torch.__version__,
        "optuna": optuna.__version__, "python": platform.python_version()})
    study, spec = open_study(cfg, storage, run_spec)
    workers = auto_workers(cfg, device)
    log.info("%s on %s, budget %s: %d epochs per trial, %d worker process%s x %d trial%s at "
             "once; study %s, identity %s", images.source, device_name(device), cfg.budget,
             cfg.train.epochs, workers, "" if workers == 1 else "es", cfg.sweep.streams,
             "" if cfg.sweep.streams == 1 else "s", cfg.name, spec.identity_hash())
    with study_lock(storage, cfg.name):  # trials of workers killed in an earlier run
        optuna.storages.fail_stale_trials(study)
        repaired = fail_untrainable(study, storage)
    if repaired:
        log.warning("%d queued trials could not be trained and are recorded as failed (%s); "
                    "their design points are queued again", len(repaired), repaired[0])
    start = datetime.now()
    try:
        failed = train_design(cfg, spec, study, storage, images, device, workers, start)
    except Interrupted as stop:
        raise Interrupted(stop.signum, interrupted_status(study, start)) from None
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    log.info("study %s now holds %s", cfg.name, dict(states))
    report_dir, _ = write_report(study, REPORTS, Path(cfg.artifact_dir),
                                 cfg.analysis.practical_effect)
    log.info("report: %s (and report.md)", report_dir / "report.html")
    log.info("see the study: optuna-dashboard --host 127.0.0.1 --artifact-dir %s %s",
             cfg.artifact_dir, mask_url(cfg.storage))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(failed) >= cfg.sweep.max_failures or (failed and not finished):
        reasons = Counter(one_line(t.user_attrs.get("reason", "no heartbeat")) for t in failed)
        what = (f"stopped after {len(failed)} failed trial{'' if len(failed) == 1 else 's'} "
                f"(sweep.max_failures={cfg.sweep.max_failures})"
                if len(failed) >= cfg.sweep.max_failures else f"all {len(failed)} trials failed")
        raise StudyStopped(f"{what}; most common reason: {reasons.most_common(1)[0][0]}; "
                           f"{report_dir / 'report.md'} lists every failed trial with its "
                           "reason")


def train_design(cfg: DictConfig, spec: StudySpec, study: optuna.Study,
                 storage: optuna.storages.RDBStorage, images: Images, device: torch.device,
                 workers: int, start: datetime) -> list[optuna.trial.FrozenTrial]:
    """Train the design's missing trials with `workers` processes, until none is left or
    sweep.max_failures trials failed since `start`; returns those failures."""
    with SweepProgress(study, spec.total_trials(), cfg.train.epochs) as progress:
        while True:
            if spec.kind.fixed:
                with study_lock(storage, cfg.name):
                    added = enqueue_missing(study, spec)
                log.info("study %s: %d trials enqueued (%d in the design: %d points x %d "
                         "seed(s), the baseline's x %d)", cfg.name, added, spec.total_trials(),
                         len(spec.points()), len(spec.seeds), len(spec.point_seeds("baseline")))
            if workers == 1:
                run_worker(cfg, spec, study, storage, images, device)
            else:
                run_workers(cfg, study, storage, workers, quiet=progress.interactive)
            failed = failures_since(study, start)
            if len(failed) >= cfg.sweep.max_failures or \
                    not wait_for_stale_trials(study, storage, cfg):
                return failed


def interrupted_status(study: optuna.Study, start: datetime) -> str:
    """What an interrupted run leaves: its finished trials and those recorded as interrupted."""
    ended = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None
             and t.datetime_complete >= start]
    interrupted = sum(t.user_attrs.get("reason") == INTERRUPTED for t in ended)
    done = sum(t.state == TrialState.COMPLETE for t in ended)
    return (f"{done} trial{'' if done == 1 else 's'} of this run finished and recorded, "
            f"{interrupted} running recorded as interrupted (a rerun trains them again)")


def wait_for_stale_trials(study: optuna.Study, storage: optuna.storages.RDBStorage,
                          cfg: DictConfig) -> bool:
    """After this run's workers are done, wait while other trials are still running (on other
    machines, or held by a worker killed in an earlier run), failing those whose heartbeat
    stopped, which queues them again; True when trials wait to be trained."""
    waited = 0
    while running := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if waited % 60 < cfg.sweep.heartbeat_s:
            log.info("waiting for %d trial(s) running elsewhere: %s", len(running),
                     ", ".join(str(t.number) for t in running))
        time.sleep(cfg.sweep.heartbeat_s)
        waited += cfg.sweep.heartbeat_s
        with study_lock(storage, cfg.name):
            optuna.storages.fail_stale_trials(study)
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def main() -> None:
    run_app(run_sweep, "sweep")


if __name__ == "__main__":
    main()
