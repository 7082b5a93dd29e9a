"""Where the apps write, and the rules that keep them there.

A study's name becomes a folder (`reports/<name>/`, `results/hydra/<name>/`, the TensorBoard
runs), so it must be one harmless path component: `name_problem` is the rule, checked with the
config (study.design.config.validate) before Hydra makes a folder from it, and `named_folder`
is the one way to build a path from a name, refusing anything that would land outside its root.
The
commands call `check_writable` on every folder they will write before any training, so that a
`reports` that is a file or a read-only `results/` ends the command at once instead of after the
study.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig

from study.errors import UserError

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


def check_outputs(cfg: DictConfig, database: Path | None, report: bool) -> None:
    """Check, creating nothing, every folder that a run of `cfg` will write: its SQLite
    storage's (`database`), its TensorBoard runs', and with `report` the report's and the
    dashboard artifacts'."""
    folders = {"storage": database.parent if database else None}
    if cfg.logger.kind == "tensorboard":
        folders["logger.dir"] = named_folder(Path(cfg.logger.dir), cfg.name)
    if report:
        folders |= {"reports": named_folder(REPORTS, cfg.name),
                    "artifact_dir": Path(cfg.artifact_dir)}
    for what, folder in folders.items():
        if folder is not None:
            check_writable(folder, what)
