"""The study storage: open it, create or continue a study, and keep its trial queue.

`open_study` creates a study with its spec (study.spec), or continues one whose spec has the same
identity, growing it by what the run adds; a run that would change what the study is gets a
one-line UserError and changes nothing. Fixed designs (ofat, grid) put every (design point, seed)
into the study's queue with `enqueue_trial`; both happen under a per-study lock, so that machines
starting at once create and enqueue the study once. A worker takes the next waiting trial with
Optuna's own claim. A trial whose worker died (no heartbeat) is failed by Optuna's
`fail_stale_trials` and queued again by its RetryHeartbeatStaleTrialCallback. On SQLite every
transaction takes the write lock up front (BEGIN IMMEDIATE): the claim reads, then writes, and
without that lock two processes can both claim the same trial (seen here: 28 double claims in 300
with 4 processes). Storage URLs are shown with the password masked; a storage problem is a
one-line UserError.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import optuna
import sqlalchemy
from omegaconf import DictConfig
from optuna.trial import TrialState

from study.cost import point_costs
from study.engine import TrialResult
from study.errors import UserError
from study.factors import untrainable
from study.paths import check_writable
from study.spec import SPEC_ATTR, StudySpec, code_version, stored_spec

log = logging.getLogger("study.storage")
# The one place Optuna's ExperimentalWarning is silenced, for every app and worker (they all
# import this module): the project relies on heartbeats, their retry callback, metric names and
# artifacts on purpose, and the warnings would break a user error's one line on stderr.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Optuna's log lines ("A new study created ...") go through the app's logging (Hydra's: stdout
# and the run's log file) rather than straight to stderr, which is kept for the one-line errors.
optuna.logging.disable_default_handler()
optuna.logging.enable_propagation()
CLAIMED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # recorded on each trial a process claims
SCHEMA_ATTEMPTS = 3  # tries to open a storage whose tables another process is creating
SQLITE_BUSY_TIMEOUT_S = 300  # how long a worker waits for another's SQLite write lock
SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)  # ?password=, ...
MASK = "***"
INVALID_URL = "<invalid storage URL>"
OBJECTIVE = "test_accuracy"  # the name of every study's one objective, shown by the dashboard
INTERRUPTED = "interrupted"  # the reason recorded on trials stopped by Ctrl-C or SIGTERM


def mask_url(url: str) -> str:
    """The storage URL with its password and every query parameter that may carry one (libpq
    takes `?password=`) replaced by ***, for logs, reports and the files Hydra writes."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return INVALID_URL
    hidden = {key: MASK for key in parsed.query if SECRET_QUERY_KEY.search(key)}
    rendered = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return rendered.replace(quote(MASK, safe=""), MASK)


def parse_url(url: str) -> sqlalchemy.engine.URL:
    try:
        return sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"storage={mask_url(url)} is not a SQLAlchemy URL (e.g. "
                        "sqlite:///results/optuna.db, postgresql://user@host/db)") from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite storage URL; None for other databases and in-memory
    SQLite."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def open_storage(url: str, heartbeat_s: int | None = None, create: bool = True
                 ) -> optuna.storages.RDBStorage:
    """The study storage at `url`; with heartbeat_s, running trials whose heartbeat is older
    than 3 x heartbeat_s count as stale (their worker died): `fail_stale_trials` fails them
    and queues each again. Without `create`, a SQLite file that does not exist is a UserError
    instead of a new, empty storage (for commands that only read)."""
    sqlite = parse_url(url).get_backend_name() == "sqlite"
    database = sqlite_file(url)
    if database is not None and not create and not database.is_file():
        raise UserError(f"no storage at {database} (storage={mask_url(url)}): check the path, "
                        "or run python -m study.sweep first")
    if database is not None:
        check_writable(database.parent, "storage")
        database.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if sqlite else {}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                grace_period=3 * heartbeat_s if heartbeat_s else None,
                heartbeat_stale_trial_callback=(
                    optuna.storages.RetryHeartbeatStaleTrialCallback() if heartbeat_s
                    else None))
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


def open_study(cfg: DictConfig, storage: optuna.storages.RDBStorage, run_spec: StudySpec
               ) -> tuple[optuna.Study, StudySpec]:
    """Create the study `name` with `run_spec`, or continue it: its stored spec, grown by what
    the run adds. UserError when the run is not the same study, and then nothing is written:
    the check runs once before the lock (which may create a lock file) and once under it."""
    continued_spec(storage, cfg.name, run_spec)
    with study_lock(storage, cfg.name):
        stored, spec = continued_spec(storage, cfg.name, run_spec)
        study = optuna.create_study(study_name=cfg.name, storage=storage, direction="maximize",
                                    sampler=make_sampler(cfg), load_if_exists=True)
        if spec is not stored:
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
        if study.metric_names != [OBJECTIVE]:
            study.set_metric_names([OBJECTIVE])
    if stored is not None and spec is not stored:
        log.info("study %s grows: %s", cfg.name, spec.history[-1])
    return study, spec


def continued_spec(storage: optuna.storages.RDBStorage, name: str, run_spec: StudySpec
                   ) -> tuple[StudySpec | None, StudySpec]:
    """The study's stored spec (None for a new study) and its spec once this run joins it."""
    existing = {s.study_name: s for s in storage.get_all_studies()}.get(name)
    # a study with neither spec nor trials was left by a run killed while creating it
    empty = existing is not None and SPEC_ATTR not in existing.user_attrs and \
        not storage.get_n_trials(storage.get_study_id_from_name(name))
    if existing is None or empty:
        return None, run_spec
    stored = stored_spec(name, existing.user_attrs)
    return stored, stored.grow(run_spec, name, mask_url(str(storage.url)))


@contextlib.contextmanager
def study_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[None]:
    """Hold a lock that only one process per study holds, so that two machines starting at
    once do not both create the study or enqueue its design: a PostgreSQL advisory lock, a lock
    file next to a SQLite database; other databases get none (start their first workers one at
    a time)."""
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


def enqueue_missing(study: optuna.Study, spec: StudySpec) -> int:
    """Enqueue every (design point, seed) that is not already done, running or waiting, the most
    expensive points first (workers take the queue in order: the longest trials start first and
    the run ends with short ones, not with one long trial and idle workers)."""
    claimed = Counter((t.user_attrs.get("design_point"), t.user_attrs.get("seed"))
                      for t in study.get_trials(deepcopy=False, states=CLAIMED))
    costs = point_costs(spec)
    added = 0
    for point in sorted(spec.points(), key=lambda p: -costs.get(p.id, 1.0)):
        for seed in spec.point_seeds(point.id):
            if claimed[(point.id, seed)] == 0:
                study.enqueue_trial(point.params, user_attrs={"design_point": point.id,
                                                              "seed": seed})
                added += 1
    return added


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
        state, value, attrs = TrialState.FAIL, None, attrs | {"outcome": "failed",
                                                                "reason": reason}
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
    trial.set_user_attr("outcome", "failed")
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
