"""The study storage: open it, and create or continue a study in it.

`open_study` creates a study with its spec (study.design.spec), or continues one whose spec has
the same identity, growing it by what the run adds; a run that would change what the study is
gets a one-line UserError and changes nothing. It works under a per-study lock (`study_lock`),
so that machines starting at once create the study (and enqueue its design: study.runs.queue)
once. A trial whose worker died (no heartbeat) is failed by Optuna's `fail_stale_trials` and
queued again by its RetryHeartbeatStaleTrialCallback, which `open_storage` installs. On SQLite
every transaction takes the write lock up front (BEGIN IMMEDIATE): a claim reads, then writes,
and without that lock two processes can both claim the same trial (seen here: 28 double claims
in 300 with 4 processes). Storage URLs are shown with the password masked; a storage problem is
a one-line UserError.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import optuna
import sqlalchemy
from omegaconf import DictConfig

from study.design.spec import SPEC_ATTR, StudySpec, stored_spec
from study.errors import UserError, one_line
from study.paths import check_writable

log = logging.getLogger("study.runs.storage")
# The one place Optuna's ExperimentalWarning is silenced, for every app and worker (they all
# import this module): the project relies on heartbeats, their retry callback, metric names and
# artifacts on purpose, and the warnings would break a user error's one line on stderr.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Optuna's log lines ("A new study created ...") go through the app's logging (Hydra's: stdout
# and the run's log file) rather than straight to stderr, which is kept for the one-line errors.
optuna.logging.disable_default_handler()
optuna.logging.enable_propagation()
SCHEMA_ATTEMPTS = 3  # tries to open a storage whose tables another process is creating
SQLITE_BUSY_TIMEOUT_S = 300  # how long a worker waits for another's SQLite write lock
SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)  # ?password=, ...
MASK = "***"
INTERPOLATION = re.compile(r"\$\{[^}]*\}")  # an OmegaConf interpolation, e.g. ${oc.env:VAR}
INVALID_URL = "<invalid storage URL>"
OBJECTIVE = "test_accuracy"  # the name of every study's one objective, shown by the dashboard


URL_ERRORS = (sqlalchemy.exc.ArgumentError, ValueError)  # what make_url raises for no URL (a
# ValueError: SQLAlchemy read a password's tail as the port)
# what follows the '@' that ends a URL's user info: host[:port][/database][?key=value&...]
# (a database name holds no '@'; a query value may)
_AFTER_USER_INFO = re.compile(
    r"(\[[^\]/?#@]*\]|[^:/?#@\[\]]*)(:\d*)?(/[^?#@]*)?(\?[^=&?#@]+=[^&#]*(&[^=&?#@]+=[^&#]*)*)?")


def make_url(url: str) -> sqlalchemy.engine.URL:
    """`url` parsed with its user info split off by hand: at the first '@' that is followed by a
    host (study.runs.storage._AFTER_USER_INFO), the user name up to the first ':' and the
    password the rest, whatever characters it holds ('@', ':', '/', '?'; a password from an
    environment variable is rarely encoded), percent-escapes decoded as SQLAlchemy does.
    SQLAlchemy alone splits at the first '@' and takes the password's tail for the host (or
    its port). ArgumentError or ValueError for what is no URL."""
    scheme, separator, rest = url.partition("://")
    at = [i for i, c in enumerate(rest) if c == "@"] if separator else []
    split = next((i for i in at if _AFTER_USER_INFO.fullmatch(rest, i + 1)), None)
    if split is None or rest.startswith("/"):  # no user info (e.g. SQLite's path)
        return sqlalchemy.engine.make_url(url)
    user, has_password, password = rest[:split].partition(":")
    return sqlalchemy.engine.make_url(f"{scheme}://{rest[split + 1:]}").set(
        username=unquote(user) or None, password=unquote(password) if has_password else None)


def quote_password(url: str) -> str:
    """`url`, or where SQLAlchemy would misread its password (make_url) the URL with the
    password percent-encoded."""
    try:
        parsed = make_url(url)
    except URL_ERRORS:
        return url
    try:
        misread = parsed != sqlalchemy.engine.make_url(url)
    except URL_ERRORS:  # e.g. the password's tail as a port
        misread = True
    return parsed.render_as_string(hide_password=False) if misread else url


def _secrets(parsed: sqlalchemy.engine.URL) -> list[str]:
    """The URL's password and the values of its query parameters that may carry one (a key
    given twice has a tuple of values)."""
    secrets = [parsed.password] if parsed.password else []
    for key, values in parsed.query.items():
        if SECRET_QUERY_KEY.search(key):
            secrets += [values] if isinstance(values, str) else list(values)
    return secrets


def mask_url(url: str) -> str:
    """The storage URL with its password and every query parameter that may carry one (libpq
    takes `?password=`) replaced by ***, for logs, reports and the files Hydra writes."""
    try:
        parsed = make_url(url)
    except URL_ERRORS:
        return INVALID_URL
    hidden = {key: MASK for key in parsed.query if SECRET_QUERY_KEY.search(key)}
    rendered = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return rendered.replace(quote(MASK, safe=""), MASK)


def secrets_as_written(url: str) -> bool:
    """True when every secret in `url` is an interpolation (`${oc.env:PGPASSWORD}`), which
    holds no secret as written and must stay as written for the command to rerun."""
    try:
        secrets = _secrets(make_url(url))
    except URL_ERRORS:
        return False
    return all(INTERPOLATION.fullmatch(secret) for secret in secrets)


def parse_url(url: str) -> sqlalchemy.engine.URL:
    try:
        return make_url(url)
    except URL_ERRORS:
        raise UserError(f"storage={mask_url(url)} is not a SQLAlchemy URL (e.g. "
                        "sqlite:///results/optuna.db, postgresql://user@host/db)") from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite storage URL; None for other databases. UserError for
    in-memory SQLite, where nothing would persist (and other processes see nothing)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise UserError(f"storage={mask_url(url)} is an in-memory database: no trial would "
                        "persist; give a file, e.g. storage=sqlite:///results/optuna.db")
    return Path(database.removeprefix("file:").split("?")[0])


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
                quote_password(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
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
        except (*STORAGE_ERRORS, ImportError) as error:
            raise storage_fault(url, error) from None
    if sqlite:
        lock_sqlite_transactions(storage.engine)
        check_sqlite(storage, url)
    return storage


# What a storage that is broken, read-only or unreachable raises; the apps print it as one line
STORAGE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)


def storage_fault(url: str, error: BaseException) -> UserError:
    """`error` from the storage at `url` as one line: the database's own reason, the URL with
    its password masked, and the way out."""
    cause = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) \
        else error
    reason = str(getattr(cause, "orig", None) or cause or error).splitlines()[0]
    way_out = ("restore the database from a backup, or choose another storage="
               if "malformed" in reason or "not a database" in reason else
               "make it writable, or choose another storage=" if "readonly" in reason else
               "check the database and the URL, or choose another storage=")
    return UserError(f"storage {mask_url(url)}: {reason}; {way_out}")


def check_sqlite(storage: optuna.storages.RDBStorage, url: str) -> None:
    """UserError unless the SQLite database is whole and writable: a corrupted page is found
    now (PRAGMA quick_check reads every page: 0.1 s for a 109 MB database on the 2-core CPU, the
    file in the page cache), not by the trial that first touches it; a read-only one by a write
    that is rolled back (the file stays as it was)."""
    try:
        with storage.engine.connect() as connection:
            rows = connection.exec_driver_sql("PRAGMA quick_check").fetchall()
            connection.exec_driver_sql("CREATE TABLE study_write_probe (x INTEGER)")
            connection.rollback()
    except STORAGE_ERRORS as error:
        raise storage_fault(url, error) from None
    if rows != [("ok",)]:
        raise UserError(f"storage {mask_url(url)}: database disk image is malformed "
                        f"({one_line(rows[0][0], 120)}); restore the database from a backup, or "
                        "choose another storage=")


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
