"""Run a design and record every trial in an Optuna study: `python -m study.sweep`.

Fixed designs (ofat, grid) put every (design point, seed) into the study's queue with
`enqueue_trial`; a worker takes the next waiting trial with Optuna's own atomic claim, trains it
and tells the result. Because the queue lives in the storage, a second process or machine started
with the same `name` and `storage` shares the work, and re-running the command enqueues only what
is missing. The optuna design asks the configured sampler until `sweep.n_trials` trials exist.

`sweep.workers` worker processes (default: `auto_workers`) each load the data onto the device
once and then train trial after trial; a worker that crashes leaves the others running, and the
trial it held is recorded as failed. On SQLite every transaction takes the write lock up front
(BEGIN IMMEDIATE): Optuna's claim of a waiting trial reads, then writes, and without that lock two
processes can both claim the same trial (seen here: 28 double claims in 300 with 4 processes).

Each trial records: params = the seven studied factors; user attributes = seed, design_point,
outcome (complete | diverged | failed), per-epoch train_loss/train_accuracy, wall_time_s, device,
and for failures the reason. The sweep ends by writing the report and printing the
optuna-dashboard command.

    python -m study.sweep                                  # the textbook's OFAT study
    python -m study.sweep sweep=grid budget=full storage=postgresql://user@host/db
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import platform
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from study.config import StudyStopped, UserError
from study.data import DeviceData, Images, load_images, to_device
from study.design import (
    apply_params,
    baseline,
    distributions,
    fixed_points,
    replicate_seeds,
)
from study.progress import SweepProgress
from study.tensorboard_log import TrialLog
from study.train import TrialResult, device_name, pick_device, resolve_engine, train_trial

log = logging.getLogger("study.sweep")
CLAIMED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # recorded on each trial a process claims
SCHEMA_ATTEMPTS = 3  # tries to open a storage whose tables another process is creating
SQLITE_BUSY_TIMEOUT_S = 300  # how long a worker waits for another's SQLite write lock
GPU_WORKERS = 4  # worker processes per GPU by default (study.bench measures other counts)


def mask_url(url: str) -> str:
    """The storage URL with any password replaced by ***, for logs and reports."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<invalid storage URL>"


def open_storage(url: str, heartbeat_s: int | None = None) -> optuna.storages.RDBStorage:
    """The study storage at `url`; with heartbeat_s, running trials whose heartbeat is older
    than 3 x heartbeat_s count as stale (their worker died) for `fail_stale_trials`."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"storage={mask_url(url)} is not a SQLAlchemy URL (e.g. "
                        "sqlite:///results/optuna.db, postgresql://user@host/db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if sqlite else {}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                grace_period=3 * heartbeat_s if heartbeat_s else None)
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # another process is creating Optuna's tables in this empty database right now
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(1 + attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            raise UserError(f"cannot open storage {mask_url(url)}: {reason}") from None
    if sqlite:
        lock_sqlite_transactions(storage.engine)
    return storage


def lock_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Make every transaction BEGIN IMMEDIATE (SQLAlchemy's recipe for pysqlite), so that a
    read-then-write such as claiming a waiting trial is atomic across processes."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed


def make_sampler(cfg: DictConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    seed = cfg.train.seed + worker  # same-seeded samplers in parallel workers would repeat points
    if cfg.sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sweep.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(cfg: DictConfig, storage: optuna.storages.BaseStorage,
               design: str | None = None) -> optuna.Study:
    """Create the study `name`, or continue it if it exists with the same design and budget
    (the sweep's design, or `design` for studies written by other apps)."""
    design = design or cfg.sweep.design
    for existing in storage.get_all_studies():
        was = (existing.user_attrs.get("design"), existing.user_attrs.get("budget"))
        if existing.study_name == cfg.name and was != (design, cfg.budget):
            raise UserError(f"study {cfg.name!r} in {mask_url(cfg.storage)} was run with design "
                            f"{was[0]}, budget {was[1]}; this is design {design}, budget "
                            f"{cfg.budget}: choose another name=...")
    study = optuna.create_study(study_name=cfg.name, storage=storage, direction="maximize",
                                sampler=make_sampler(cfg), load_if_exists=True)
    study.set_user_attr("design", design)
    study.set_user_attr("budget", cfg.budget)
    study.set_user_attr("config", OmegaConf.to_container(cfg, resolve=True)
                        | {"storage": mask_url(cfg.storage)})
    return study


@contextlib.contextmanager
def enqueue_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[None]:
    """Hold a lock that only one process per study holds, so that two machines starting at
    once do not both enqueue the whole design: a PostgreSQL advisory lock, a lock file next to
    a SQLite database; other databases get none (start their first workers one at a time)."""
    backend = storage.engine.url.get_backend_name()
    if backend == "postgresql":
        key = zlib.crc32(study_name.encode())
        with storage.engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
    elif backend == "sqlite" and storage.engine.url.database:
        with open(f"{storage.engine.url.database}.enqueue.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield
    else:
        yield


def enqueue_missing(study: optuna.Study, cfg: DictConfig) -> int:
    """Enqueue every (design point, seed) that is not already done, running or waiting."""
    claimed = Counter((t.user_attrs.get("design_point"), t.user_attrs.get("seed"))
                      for t in study.get_trials(deepcopy=False, states=CLAIMED))
    added = 0
    for point in fixed_points(cfg):
        for seed in replicate_seeds(cfg):
            if claimed[(point.id, seed)] == 0:
                study.enqueue_trial(point.params, user_attrs={"design_point": point.id,
                                                              "seed": seed})
                added += 1
    return added


def claim_waiting_trial(study: optuna.Study, storage: optuna.storages.BaseStorage
                        ) -> optuna.Trial | None:
    """Take the next enqueued trial, as Study.ask does, but never create a new one: a fixed
    design must not grow sampler-made trials when its queue runs dry."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        if storage.get_heartbeat_interval():
            # before the claim: Optuna never counts a running trial without a heartbeat as
            # stale, so a worker killed between claim and first beat would hold it forever
            storage.record_heartbeat(trial_id)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                trial = optuna.Trial(study, trial_id)
                trial.set_user_attr("worker", WORKER_ID)
                return trial
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def next_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, cfg: DictConfig,
               space: dict[str, BaseDistribution]) -> optuna.Trial | None:
    if cfg.sweep.design != "optuna":
        trial = claim_waiting_trial(study, storage)
    elif len(study.get_trials(deepcopy=False, states=CLAIMED)) < cfg.sweep.n_trials:
        trial = study.ask()
        trial.set_user_attr("worker", WORKER_ID)
        trial.set_user_attr("design_point", f"sample {trial.number}")
        trial.set_user_attr("seed", cfg.train.seed + trial.number)
    else:
        return None
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
    """Records the heartbeat of the trial this worker trains every `interval` seconds, so that a
    later run tells a killed worker's trial (no heartbeat for the grace period) from a live one."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        self.storage, self.trial_id = storage, None
        self.interval = storage.get_heartbeat_interval()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        if self.interval:
            self.thread.start()

    def follow(self, trial_id: int | None) -> None:
        self.trial_id = trial_id
        if trial_id is not None and self.interval:
            self.storage.record_heartbeat(trial_id)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            if (trial_id := self.trial_id) is not None:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as error:  # a missed beat is retried; training goes on
                    log.warning("heartbeat of trial id %d failed: %s", trial_id, error)


def failures_since(study: optuna.Study, start: datetime) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.datetime_complete is not None and t.datetime_complete >= start]


def run_worker(cfg: DictConfig, study: optuna.Study, storage: optuna.storages.BaseStorage,
               images: Images, device: torch.device) -> Counter:
    """Train trials until the design is exhausted, or until sweep.max_failures trials have
    failed since this worker started; return how many ended in each outcome."""
    space = distributions(cfg)
    prepared: dict[str, DeviceData] = {}  # preprocessing -> data on the device, made once
    outcomes: Counter = Counter()
    start, heartbeat = datetime.now(), Heartbeat(storage)
    try:
        while len(failures_since(study, start)) < cfg.sweep.max_failures and (
                trial := next_trial(study, storage, cfg, space)) is not None:
            heartbeat.follow(trial._trial_id)
            outcomes[train_one(cfg, study, trial, images, device, prepared)] += 1
            heartbeat.follow(None)
    finally:
        heartbeat.stop.set()
    return outcomes


def train_one(cfg: DictConfig, study: optuna.Study, trial: optuna.Trial, images: Images,
              device: torch.device, prepared: dict[str, DeviceData]) -> str:
    """Train one claimed trial and tell the study its result; return its outcome."""
    seed = trial.user_attrs["seed"]
    trial_cfg = apply_params(cfg, trial.params, seed)
    label = f"trial {trial.number} [{trial.user_attrs['design_point']}, seed {seed}]"
    board = (TrialLog(cfg.logger.dir, study.study_name, f"trial-{trial.number}")
             if cfg.logger.kind == "tensorboard" else None)

    def on_epoch(epoch: int, loss: float, accuracy: float) -> None:
        trial.set_user_attr("epochs_done", epoch + 1)  # for the progress display
        if board:
            board.epoch(epoch, loss, accuracy)

    try:
        preprocessing = trial_cfg.data.preprocessing
        if preprocessing not in prepared:
            prepared[preprocessing] = to_device(images, preprocessing, device,
                                                cfg.data.zca_epsilon)
        result = train_trial(trial_cfg, prepared[preprocessing], on_epoch=on_epoch)
    except KeyboardInterrupt:
        record_failure(study, trial, "interrupted")
        raise
    except Exception as error:  # a failing trial is recorded and the sweep goes on
        log.exception("%s failed", label)
        record_failure(study, trial, f"{type(error).__name__}: {error}")
        return "failed"
    for key, value in result.as_dict().items():
        if key != "test_accuracy":
            trial.set_user_attr(key, value)
    study.tell(trial, result.test_accuracy)
    if board:
        board.finish(trial.params, seed, result.test_accuracy, result.outcome)
    log.info("%s: %s, test accuracy %.4f (%.1f s)", label, result.outcome,
             result.test_accuracy, result.wall_time_s)
    return result.outcome


def record_job(study: optuna.Study, storage: optuna.storages.BaseStorage, cfg: DictConfig,
               design_point: str, result: TrialResult | None, reason: str = "") -> int:
    """Record one trained job (the train app) as a finished trial; return its number. Without
    a result it is a failed trial with the reason."""
    attrs = {"design_point": design_point, "seed": cfg.train.seed, "worker": WORKER_ID}
    if result is None:
        state, value, attrs = TrialState.FAIL, None, attrs | {"outcome": "failed",
                                                                "reason": reason}
    else:
        state, value = TrialState.COMPLETE, result.test_accuracy
        attrs |= {k: v for k, v in result.as_dict().items() if k != "test_accuracy"}
    space = distributions(cfg)
    frozen = optuna.trial.create_trial(state=state, value=value, params=baseline(cfg),
                                       distributions=space, user_attrs=attrs)
    trial_id = storage.create_new_trial(storage.get_study_id_from_name(study.study_name),
                                        template_trial=frozen)
    return storage.get_trial_number_from_id(trial_id)


def record_failure(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("outcome", "failed")
    trial.set_user_attr("reason", reason)
    study.tell(trial, state=TrialState.FAIL)


def auto_workers(cfg: DictConfig, device: torch.device) -> int:
    """sweep.workers, else one process on the CPU (it already uses every core) and GPU_WORKERS
    per GPU: a small CNN's trial leaves a GPU mostly idle between its kernels."""
    if cfg.sweep.workers is not None:
        return cfg.sweep.workers
    return GPU_WORKERS * torch.cuda.device_count() if device.type == "cuda" else 1


def worker_process(config: dict, index: int, count: int, quiet: bool) -> None:
    """Entry point of a spawned worker: load the data once, then train until the queue is dry.
    `quiet`: log warnings only (a live progress display shows the rest)."""
    cfg = OmegaConf.create(config)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format=f"[%(asctime)s][worker {index}][%(levelname)s] - %(message)s")
    device = pick_device(index)
    if device.type == "cpu":  # share the cores instead of every worker using all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))
    storage = open_storage(cfg.storage, cfg.sweep.heartbeat_s)
    study = optuna.load_study(study_name=cfg.name, storage=storage,
                              sampler=make_sampler(cfg, worker=index))
    try:
        run_worker(cfg, study, storage, load_images(cfg.data), device)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


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
    except KeyboardInterrupt:
        for process in processes:  # they got the same SIGINT and record their trials
            process.join(timeout=60)
        raise
    for process in processes:
        if process.exitcode != 0:
            reason = f"worker process {process.pid} died (exit code {process.exitcode})"
            log.error("%s", reason)
            fail_trials_of(study, storage, f"{socket.gethostname()}:{process.pid}", reason)


def fail_trials_of(study: optuna.Study, storage: optuna.storages.BaseStorage, worker: str,
                   reason: str) -> None:
    """Record the trials a dead worker was running as failed, so a rerun trains them again."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.user_attrs.get("worker") == worker:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
            record_failure(study, optuna.Trial(study, trial_id), reason)


def run_sweep(cfg: DictConfig) -> None:
    from study.report import write_report

    device = pick_device()
    resolve_engine(cfg.train.compile, device)  # a mode this device lacks is an error now
    images = load_images(cfg.data)  # before the storage, so that bad data writes nothing
    storage = open_storage(cfg.storage, cfg.sweep.heartbeat_s)
    study = open_study(cfg, storage)
    study.set_user_attr("data_source", images.source)
    study.set_user_attr("environment", {
        "device": device_name(device), "torch": torch.__version__, "optuna": optuna.__version__,
        "python": platform.python_version()})
    workers = auto_workers(cfg, device)
    log.info("%s on %s, budget %s: %d epochs per trial, %d worker process%s", images.source,
             device_name(device), cfg.budget, cfg.train.epochs, workers,
             "" if workers == 1 else "es")
    total = (cfg.sweep.n_trials if cfg.sweep.design == "optuna"
             else len(fixed_points(cfg)) * cfg.sweep.seeds)
    start = datetime.now()
    optuna.storages.fail_stale_trials(study)  # trials of workers killed in an earlier run
    with SweepProgress(study, total, cfg.train.epochs) as progress:
        while True:
            if cfg.sweep.design != "optuna":
                with enqueue_lock(storage, cfg.name):
                    added = enqueue_missing(study, cfg)
                log.info("study %s: %d trials enqueued (%d design points x %d seeds in the "
                         "design)", cfg.name, added, len(fixed_points(cfg)), cfg.sweep.seeds)
            if workers == 1:
                run_worker(cfg, study, storage, images, device)
            else:
                run_workers(cfg, study, storage, workers, quiet=progress.interactive)
            failed = failures_since(study, start)
            if len(failed) >= cfg.sweep.max_failures or not wait_for_stale_trials(study, cfg):
                break
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    log.info("study %s now holds %s", cfg.name, dict(states))
    report_dir, _ = write_report(study, Path("reports"), Path(cfg.artifact_dir))
    log.info("report: %s (and report.md)", report_dir / "report.html")
    log.info("see the study: optuna-dashboard --host 127.0.0.1 --artifact-dir %s %s",
             cfg.artifact_dir, mask_url(cfg.storage))
    if len(failed) >= cfg.sweep.max_failures:
        reasons = Counter(t.user_attrs.get("reason", "no heartbeat") for t in failed)
        raise StudyStopped(f"stopped after {len(failed)} failed trials (sweep.max_failures="
                        f"{cfg.sweep.max_failures}); most common reason: "
                        f"{reasons.most_common(1)[0][0]}; the report lists them all")


def wait_for_stale_trials(study: optuna.Study, cfg: DictConfig) -> bool:
    """After this run's workers are done, wait while other trials are still running (on other
    machines, or held by a worker killed in an earlier run), failing those whose heartbeat
    stopped; True when some did, so that their design points are trained again."""
    if cfg.sweep.design == "optuna":
        return False
    stale, waited = False, 0
    while running := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if waited % 60 < cfg.sweep.heartbeat_s:
            log.info("waiting for %d trial(s) running elsewhere: %s", len(running),
                     ", ".join(str(t.number) for t in running))
        time.sleep(cfg.sweep.heartbeat_s)
        waited += cfg.sweep.heartbeat_s
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        optuna.storages.fail_stale_trials(study)
        stale |= len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) > before
    return stale


def main() -> None:
    from study.cli import run_app

    run_app(run_sweep, "sweep")


if __name__ == "__main__":
    main()
