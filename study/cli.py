"""Shared entry point of the commands (`study.train`, `study.sweep`, `study.report`,
`study.bench`), on Hydra's public entry points only.

`run_app(task)` first composes the config from the command line with Hydra's compose API and
checks it (`validate`, and that Hydra's run folder can be written), so a user error (unknown
key, wrong type, value outside its allowed set, unknown config group option) ends the command at
once with one line on stderr and exit status 2, never a traceback, before Hydra makes a folder.
Then `hydra.main` runs `task` as a Hydra job (its run folder, config copy and log file). Errors
found later (missing data, unreachable storage, a study of another identity) are raised as
`UserError` and reported the same way, and the run folder is removed again. A multirun (`-m`)
and Hydra's own flags (`--help`, `--cfg`, `--info`) go to `hydra.main` directly, which composes
each job itself. Without a GPU and without an explicit `budget=`, it selects `budget=quick` and
says so, so that a plain `python -m study.sweep` cannot start a multi-day job on a laptop.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from study.design.config import StudyConfig, register_schema, validate
from study.design.factors import FACTORS
from study.errors import (
    ConfigError,
    Interrupted,
    StudyStopped,
    UserError,
    one_line,
    raise_on_signals,
)
from study.paths import check_writable
from study.runs.storage import (
    INVALID_URL,
    STORAGE_ERRORS,
    mask_url,
    secrets_as_written,
    storage_fault,
)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("study")


def compose_config(overrides: list[str]) -> DictConfig:
    """The study's config as the apps see it, resolved and validated; ConfigError with one
    line."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return _compose(overrides)[1]


def _compose(overrides: list[str]) -> tuple[DictConfig, DictConfig]:
    """One composition (inside `initialize_config_dir`): the config with Hydra's node, and the
    study's part of it, resolved and validated."""
    register_schema()
    for before, arg in zip(["", *overrides], overrides, strict=False):
        if "=" not in arg and not arg.startswith(("~", "-")):
            after = f"; if it is the rest of {before!r}, quote the whole: \"{before} {arg}\"" \
                if "=" in before else ""
            raise ConfigError(f"{arg!r} is not an override (key=value){after}")
    try:
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        OmegaConf.resolve(task)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_one_line(error, overrides)) from None
    validate(task)
    return cfg, task


def _one_line(error: BaseException, overrides: list[str]) -> str:
    if isinstance(error, MissingConfigException) and error.options is not None:
        group = (error.missing_cfg_file or "").split("/")[0]
        missing = (error.missing_cfg_file or "").split("/")[-1]
        return f"{group}={missing} is not a config option; options: {', '.join(error.options)}"
    cause = error.__cause__ or error.__context__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        return _unknown_key(cause.full_key)
    text = str(cause if isinstance(cause, OmegaConfBaseException) else error)
    text = text.split("\n    full_key:")[0]  # OmegaConf appends object details we do not need
    key = getattr(cause, "full_key", None)
    message = one_line(text)
    return f"{key}: {message}" if key and key not in message else message


def _unknown_key(full_key: str) -> str:
    """Name the key and the keys its parent has, as the schema defines them."""
    parent = full_key.rpartition(".")[0]
    schema = OmegaConf.structured(StudyConfig)
    node = OmegaConf.select(schema, parent) if parent else schema
    keys = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else ""
    where = f"keys in {parent}" if parent else "top-level keys"
    message = f"unknown key '{full_key}'; {where}: {keys}"
    if parent == "sweep.levels":
        message += f" (add a factor with +{full_key}=[...]; factors: {', '.join(FACTORS)})"
    return message


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _remove_run_dir() -> None:
    """Remove the folder Hydra made for this run (its config copy and log), and the parents that
    are left empty, so that a command stopped by a user error leaves nothing behind."""
    run_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    cwd = Path.cwd().resolve()
    for parent in run_dir.parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def _fail(error: Exception) -> NoReturn:
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def _not_given(overrides: tuple[str, ...], args: list[str]) -> list[str]:
    return [o for o in overrides
            if not any(re.match(rf"\+*{re.escape(o.partition('=')[0])}=", a) for a in args)]


def _hide_storage_secret(args: list[str]) -> tuple[list[str], str | None]:
    """The command line with a storage URL's secrets masked, and the real URL (None when there
    was nothing to mask): Hydra writes the command line and the config into its run folder
    (.hydra/*.yaml), and those must not hold a password; the task gets the real URL back. A
    secret given as an interpolation (${oc.env:PGPASSWORD}) holds none and stays as written, so
    that the saved overrides and the "continue with" command rerun."""
    masked, real = [], None
    for arg in args:
        key, is_override, value = arg.partition("=")
        quote = value[0] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else ""
        url = value[1:-1] if quote else value  # a URL with ?password= must be quoted for Hydra
        if is_override and key.lstrip("+") == "storage" and \
                mask_url(url) not in (url, INVALID_URL) and not secrets_as_written(url):
            real, arg = url, f"{key}={quote}{mask_url(url)}{quote}"
        masked.append(arg)
    return masked, real


def _interrupted(stop: Interrupted, job_name: str, args: list[str]) -> NoReturn:
    status = f"{stop.status}; " if stop.status else ""
    command = shlex.join(["python", "-m", f"study.{job_name}", *args])
    print(f"interrupted by {stop}: {status}continue with: {command}", file=sys.stderr)
    sys.exit(stop.exit_code)


def list_overrides(args: list[str], keys: tuple[str, ...]) -> list[str]:
    """`key=a,b` as the list `key=[a,b]` for each of `keys`: Hydra reads a bare comma list as a
    sweep."""
    def as_list(arg: str) -> str:
        key, _, value = arg.partition("=")
        return f"{key}=[{value}]" if key in keys and not value.startswith("[") else arg

    return [as_list(arg) for arg in args]


def run_app(task: Callable[[DictConfig], None], job_name: str,
            cpu_defaults: tuple[str, ...] = ("budget=quick",),
            app_defaults: tuple[str, ...] = (), list_keys: tuple[str, ...] = ()) -> None:
    """Check the command line, then run `task` as a Hydra job; user errors print one line, and
    so do Ctrl-C and SIGTERM. Each of `app_defaults` (key=value) applies unless its key is
    given; without a GPU, so does each of `cpu_defaults`; each of `list_keys` takes a bare
    comma list as a list."""
    raise_on_signals()
    for arg in sys.argv[1:]:
        try:
            arg.encode()
        except UnicodeEncodeError:  # undecodable bytes in a non-UTF-8 locale (e.g. LC_ALL=C)
            _fail(UserError(f"the argument {arg!a} is not text in this locale: run with a "
                            "UTF-8 locale (e.g. LC_ALL=C.UTF-8) or PYTHONUTF8=1"))
    given, real_storage = _hide_storage_secret(list_overrides(sys.argv[1:], list_keys))
    try:
        _run_app(task, job_name, given, real_storage, cpu_defaults, app_defaults)
    except Interrupted as stop:
        _interrupted(stop, job_name, given)


def _run_app(task: Callable[[DictConfig], None], job_name: str, given: list[str],
             real_storage: str | None, cpu_defaults: tuple[str, ...],
             app_defaults: tuple[str, ...]) -> None:
    args = list(given)
    passes_through = any(a.startswith(("--help", "-h", "--cfg", "-c", "--info")) for a in args)
    auto = [] if passes_through or _has_gpu() else _not_given(cpu_defaults, args)
    args.extend([*auto, *_not_given(app_defaults, args)])

    def checked_task(cfg: DictConfig) -> None:
        if real_storage is not None:
            cfg.storage = real_storage
        if "budget=quick" in auto:
            log.warning("No GPU found: running budget=quick (a training subset, fewer epochs, one"
                        " seed per design point and six of the baseline); pass budget=full for "
                        "the full study.")
        if "bench=cpu" in auto:
            log.warning("No GPU found: running bench=cpu (small sizes; CPU ratios say little"
                        " about a GPU).")
        try:
            validate(cfg)  # again: a multirun's jobs come here unchecked
            task(cfg)
        except UserError as error:
            if not isinstance(error, StudyStopped):
                _remove_run_dir()
            _fail(error)
        except STORAGE_ERRORS as error:  # the storage broke while the run used it: its log stays
            _fail(storage_fault(cfg.storage, error))

    if not passes_through and not any(a in ("-m", "--multirun") for a in args):
        try:  # the whole command line, before Hydra makes its run folder
            with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=job_name):
                cfg, _ = _compose(args)
                check_writable(Path(cfg.hydra.run.dir), "hydra.run.dir")  # Hydra's first write
        except UserError as error:
            _fail(error)
    register_schema()
    sys.argv[1:] = [*args, f"hydra.job.name={job_name}"]  # hydra.main reads them; names the log
    hydra.main(config_path=str(CONF_DIR), config_name="config",
               version_base="1.3")(checked_task)()
