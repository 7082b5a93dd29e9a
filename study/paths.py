"""Where the apps write, and the rules that keep them there.

A study's name becomes a folder (`reports/<name>/`, `results/hydra/<name>/`, the TensorBoard
runs), so it must be one harmless path component: `name_problem` is the rule, checked with the
config (study.design.config.validate) before Hydra makes a folder from it, and `named_folder`
is the one way to build a path from a name, refusing anything that would land outside its root.
The commands call `check_writable` on every folder they will write before any training, so that a
`reports` that is a file or a read-only `results/` ends the command at once instead of after the
study. A report is written whole or not at all (`written_whole`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from study.errors import UserError, WriteFailed

REPORTS = Path("reports")  # every report goes to reports/<study name>/
NAME_MAX = 100  # characters; well under every file system's 255-byte limit on a component
NAME_RULE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def name_problem(name: str) -> str | None:
    """None when `name` may name a study (and so a folder), else what the rule asks."""
    if not NAME_RULE.fullmatch(name) or len(name) > NAME_MAX:
        return (f"a study name is 1-{NAME_MAX} letters, digits and '-_.', not starting with "
                "'.'")
    return None


def named_folder(root: Path, name: str) -> Path:
    """`root/name`, after checking that `name` follows the rule and that the folder, symbolic
    links followed, lies inside `root`."""
    problem = name_problem(name)
    if problem:
        raise UserError(f"name={name!r} is not allowed: {problem}")
    folder = root / name
    if root.resolve() not in folder.resolve().parents:
        raise UserError(f"{folder} leads outside {root} (a symbolic link?); remove it or choose "
                        "another name=")
    return folder


def check_writable(folder: Path, what: str) -> None:
    """UserError unless `folder` is, or could be created as, a writable folder; creates
    nothing. `what` names the setting it comes from, for the message."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise UserError(f"{what}: {path} is not a folder, so {folder} cannot be "
                                "written; move it away or choose another location")
            if not os.access(path, os.W_OK | os.X_OK):
                raise UserError(f"{what}: cannot write to {path}; make it writable or choose "
                                "another location")
            return


@contextlib.contextmanager
def written_whole(folder: Path) -> Iterator[Path]:
    """A new, empty folder beside `folder` to write into; when the block ends without an error,
    it replaces `folder` in one step, so that a reader, a crash, a signal or a full disk always
    leaves either the whole old folder or the whole new one. On an error the new folder is
    removed and `folder` is untouched."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{folder.name}.new-{socket.gethostname()}-"
    for stale in folder.parent.glob(f"{prefix}*"):  # left by a process killed while writing
        pid = stale.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    fresh = folder.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fresh.mkdir()
    try:
        yield fresh
        _swap_in(fresh, folder)
    except OSError as error:
        kept = "the one there before is kept" if folder.exists() else "nothing is left"
        raise WriteFailed(f"cannot write {folder}: {error.strerror or error}; {kept}") from None
    finally:
        shutil.rmtree(fresh, ignore_errors=True)  # after a swap: the old folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether it exists (PermissionError: another user's)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


AT_FDCWD, RENAME_EXCHANGE = -100, 2  # Linux's renameat2(2): swap two paths atomically


def _swap_in(fresh: Path, folder: Path) -> None:
    """Put `fresh` at `folder`; the old `folder`, if any, ends up at `fresh`."""
    if not folder.exists():
        os.rename(fresh, folder)
        return
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # not Linux, or a C library without it
        renameat2 = None
    if renameat2 is not None and renameat2(AT_FDCWD, os.fsencode(fresh), AT_FDCWD,
                                           os.fsencode(folder), RENAME_EXCHANGE) == 0:
        return
    # no atomic exchange here: two renames, the old folder gone only for the moment between
    old = fresh.with_name(fresh.name.replace(".new-", ".old-"))
    os.rename(folder, old)
    os.rename(fresh, folder)
    os.rename(old, fresh)


def check_outputs(cfg: DictConfig, database: Path | None, report: bool) -> None:
    """Check, creating nothing, every folder that a run of `cfg` will write: its SQLite
    storage's (`database`), its TensorBoard runs', and with `report` the report's and the
    dashboard artifacts'."""
    folders = [("storage", database.parent if database else None)]
    if cfg.logger.kind == "tensorboard":
        folders.append(("logger.dir", named_folder(Path(cfg.logger.dir), cfg.name)))
    if report:  # written beside the old one, then swapped in (written_whole)
        report_folder = named_folder(REPORTS, cfg.name)
        folders += [("reports", report_folder), ("reports", report_folder.parent),
                    ("artifact_dir", Path(cfg.artifact_dir))]
    for what, folder in folders:
        if folder is not None:
            check_writable(folder, what)
