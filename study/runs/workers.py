"""The sweep's worker processes: each loads the data onto its device once, then takes and
trains trial after trial from the study's queue (study.runs.queue), `sweep.streams` of them at
once (study.training.streams), until the design is exhausted or `sweep.max_failures` trials
failed. `train_design` runs them (one in this process, or `sweep.workers` spawned ones), then
waits for trials still running elsewhere. A worker that dies leaves the others running and its
trials are recorded as failed; a Ctrl-C or SIGTERM records the running trials as interrupted.
Each trial records its result, per-epoch curves (its intermediate values) and TensorBoard scalars.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Generator
from datetime import datetime

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from study.design.spec import StudySpec, stored_spec
from study.errors import (
    Interrupted,
    UserError,
    check_stop,
    raise_on_signals,
    request_stop,
    signals_deferred,
)
from study.outcomes import FAILED, INTERRUPTED
from study.runs.progress import SweepProgress
from study.runs.queue import (
    ENQUEUE_BATCH,
    Heartbeat,
    enqueue_missing,
    fail_trials_of,
    failures_since,
    next_trial,
    price,
    record_failure,
)
from study.runs.storage import make_sampler, open_storage, study_lock
from study.runs.tensorboard_log import TrialLog
from study.training.data import DeviceData, Images, load_images, to_device
from study.training.engine import trial_steps, worker_device
from study.training.memory import available_bytes, worker_bytes
from study.training.streams import TrialStreams

log = logging.getLogger("study.runs.workers")
GPU_WORKERS = 4  # worker processes per GPU by default (study.bench measures other counts)
PR_SET_PDEATHSIG = 1  # Linux prctl(2): the signal a process gets when its parent dies
PARENT_POLL_S = 1  # how often a worker checks that the run's process is alive
PARENT_GRACE_S = 8  # after the run's process died, what a worker has to record its trials


def run_worker(cfg: DictConfig, spec: StudySpec, study: optuna.Study,
               storage: optuna.storages.BaseStorage, images: Images, device: torch.device
               ) -> Counter:
    """Train trials, sweep.streams at a time, until the design is exhausted or until
    sweep.max_failures trials have failed since this worker started; return how many ended in
    each outcome."""
    space = spec.distributions()
    prepared: dict[str, DeviceData] = {}  # preprocessing -> data on the device, made once
    outcomes: Counter = Counter()
    start, heartbeat = datetime.now(), Heartbeat(study, storage)
    trials, queue_dry = TrialStreams(cfg.sweep.streams, device), False
    try:
        while True:
            while trials.has_room() and not queue_dry:
                check_stop()  # never claim a trial once the run is stopping, or its process gone
                with signals_deferred():  # claimed and registered whole: a stop records it
                    if len(failures_since(study, start)) >= cfg.sweep.max_failures or (
                            trial := next_trial(study, storage, spec, space)) is None:
                        queue_dry = True
                        break
                    heartbeat.follow(trial)
                    trials.start(trial, train_one(cfg, spec, study, trial, images, device,
                                                  prepared))
            if not trials.running:
                return outcomes
            check_stop()
            for trial, outcome in trials.turn():
                heartbeat.unfollow(trial)
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
                                                cfg.data.zca_epsilon, cfg.train.precision)
            if device.type == "cuda":  # trials on other streams will read it
                torch.cuda.current_stream(device).synchronize()
        result = yield from trial_steps(trial_cfg, prepared[preprocessing], on_epoch=on_epoch)
    except Interrupted:
        record_failure(study, trial, INTERRUPTED)
        raise
    except Exception as error:  # a failing trial is recorded and the sweep goes on
        log.exception("%s failed", label)
        record_failure(study, trial, f"{type(error).__name__}: {error}")
        return FAILED
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


def check_workers(count: int, images: int) -> None:
    """UserError when `count` worker processes, each holding `images` images, cannot fit the
    machine's available memory (study.training.memory): before any is started."""
    have, each = available_bytes(torch.device("cpu")), worker_bytes(images)
    if count > 1 and have is not None and count * each > have:
        raise UserError(f"sweep.workers={count}: each worker process holds at least "
                        f"{each / 2**30:.1f} GiB (torch, the study and its {images:,} images); "
                        f"this machine has {have / 2**30:.1f} GiB available, enough for "
                        f"{max(1, int(have // each))}")


def worker_process(config: dict, index: int, count: int, quiet: bool, parent: int,
                   log_files: list[str]) -> None:
    """Entry point of a spawned worker: load the data once, then train until the queue is dry.
    It stops, recording its trials as interrupted, when the run's process (`parent`) dies, even
    by kill -9. `quiet`: log warnings only on the console (a live progress display shows the
    rest); the run's `log_files` get every line."""
    raise_on_signals()
    stop_with_parent(parent)
    cfg = OmegaConf.create(config)
    form = logging.Formatter(f"[%(asctime)s][worker {index}][%(name)s][%(levelname)s] - "
                             "%(message)s")
    console = logging.StreamHandler(sys.stdout)  # as the run's own lines; stderr is for errors
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    handlers = [console, *(logging.FileHandler(path) for path in log_files)]
    for handler in handlers:
        handler.setFormatter(form)
    logging.basicConfig(level=logging.INFO, handlers=handlers)
    device = worker_device(index, count)
    storage = open_storage(cfg.storage, cfg.sweep.heartbeat_s)
    study = optuna.load_study(study_name=cfg.name, storage=storage,
                              sampler=make_sampler(cfg, worker=index))
    spec = stored_spec(cfg.name, study.user_attrs)
    try:
        run_worker(cfg, spec, study, storage, load_images(cfg.data), device)
    except Interrupted as stop:
        raise SystemExit(stop.exit_code) from None


def stop_with_parent(parent: int) -> None:
    """Stop this process when the process that started it (`parent`) dies, even by kill -9,
    without depending on one signal: the kernel sends SIGTERM at the parent's death (Linux's
    PR_SET_PDEATHSIG), a thread polls the parent and requests the stop itself (study.errors:
    the loop checks before each claim and step), and ends the process PARENT_GRACE_S later if
    it still runs (its trials' heartbeats end with it, so the next run fails them). Stop now if
    the parent has already died."""
    with contextlib.suppress(AttributeError):  # no prctl: the thread alone
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()
    if os.getppid() != parent:  # it died before the thread started; no trial is claimed yet
        raise SystemExit(128 + signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    request_stop(signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # interrupts a long step (ignored after a first one)
    time.sleep(PARENT_GRACE_S)
    log.error("the run's process died and this worker did not stop within %d s: exiting",
              PARENT_GRACE_S)
    os._exit(128 + signal.SIGTERM)


def run_workers(cfg: DictConfig, study: optuna.Study, storage: optuna.storages.BaseStorage,
                count: int, quiet: bool = False) -> None:
    """Run `count` worker processes and wait for all of them. Spawned, because CUDA does not
    survive fork. A worker that dies leaves the others running; its claimed trial is failed."""
    context = multiprocessing.get_context("spawn")
    config = OmegaConf.to_container(cfg, resolve=True)
    log_files = [handler.baseFilename for handler in logging.getLogger().handlers
                 if isinstance(handler, logging.FileHandler)]  # the run's log (Hydra's)
    processes = [context.Process(target=worker_process, name=f"worker-{index}",
                                 args=(config, index, count, quiet, os.getpid(), log_files))
                 for index in range(count)]
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


def train_design(cfg: DictConfig, spec: StudySpec, study: optuna.Study,
                 storage: optuna.storages.RDBStorage, images: Images, device: torch.device,
                 workers: int, start: datetime) -> list[optuna.trial.FrozenTrial]:
    """Train the design's missing trials with `workers` processes, until none is left or
    sweep.max_failures trials failed since `start`; returns those failures."""
    with SweepProgress(study, spec.total_trials(), cfg.train.epochs) as progress:
        while True:
            log.info("study %s: %s", cfg.name, price(study, spec))
            if spec.plan.fixed:
                with study_lock(storage, cfg.name):
                    added = enqueue_missing(study, spec, ENQUEUE_BATCH)
                log.info("study %s: %d trials enqueued, more as they are taken (%d in the "
                         "design: %d points x %d seed(s), the baseline's x %d)", cfg.name, added,
                         spec.total_trials(), len(spec.points()), len(spec.seeds),
                         len(spec.point_seeds("baseline")))
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
