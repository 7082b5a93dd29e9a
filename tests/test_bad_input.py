"""Every kind of bad user input, through the real command line: a non-zero exit within seconds,
one line on stderr naming the problem, no traceback, and nothing written anywhere."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.data import synthetic_images
from study.storage import open_storage, open_study
from tests.conftest import compose, spec_of
from tests.test_spec import _legacy_study

STUDY = ["budget=smoke", "data=synthetic"]
SECRET = "s3cret-pw"


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


# (app, arguments, parts of the one-line error); {tmp} is the test's folder. Config values are
# checked before Hydra starts (tests/test_config.py has their table, in-process); these cases
# fail later, inside the app, after Hydra made its run folder, which must then be gone again.
CASES = [
    ("sweep", ["+sweep.levels.momentum=[0.9]"], ["unknown factor", "channels"]),
    ("sweep", ["train.compile=graph"], ["needs a CUDA GPU"]),
    ("sweep", [*STUDY, "storage=not a url"], ["is not a SQLAlchemy URL"]),
    ("sweep", [*STUDY, f"storage=postgresql://ann:{SECRET}@127.0.0.1:1/db"],
     ["cannot open storage postgresql://ann:***@127.0.0.1:1/db"]),
    ("sweep", ["data.source=cifar10", "data.path={tmp}/missing"], ["CIFAR-10", "data.path="]),
    ("sweep", ["data.source=cifar10", "data.path={tmp}/corrupt.tar.gz"], ["corrupt.tar.gz"]),
    ("sweep", [*STUDY, "storage=sqlite:///{tmp}/old.db", "name=taken", "model.activation=gelu"],
     ["study 'taken' was created with model.activation=relu; this run has "
      "model.activation=gelu: choose another name=", "--storage sqlite:///{tmp}/old.db"]),
    ("sweep", [*STUDY, "storage=sqlite:///{tmp}/old.db", "name=old"],
     ["study 'old' was made by an older version", "can be reported", "choose another name="]),
    ("report", ["storage=sqlite:///{tmp}/old.db", "name=nope"],
     ["no study named 'nope'", "studies there: old, taken"]),
    ("train", ["model.activation=swish"], ["model.activation", "relu"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("app", "arguments", "expected"), CASES,
                         ids=[" ".join(c[1]) for c in CASES])
def test_bad_input_stops_at_once_with_one_line_and_writes_nothing(
        tmp_path, app: str, arguments: list[str], expected: list[str]) -> None:
    (tmp_path / "corrupt.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    _legacy_study(f"sqlite:///{tmp_path}/old.db")
    taken = compose(*STUDY, f"storage=sqlite:///{tmp_path}/old.db", "name=taken")
    fingerprint = synthetic_images(taken.data.synthetic_train, taken.data.synthetic_test)
    open_study(taken, open_storage(taken.storage), spec_of(taken, fingerprint.fingerprint))
    before = _files(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_PATH"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", f"study.{app}",
                          *(a.format(tmp=tmp_path) for a in arguments)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert time.monotonic() - start < 60
    assert run.returncode == 2, run.stderr[-2000:]
    [error] = run.stderr.strip().splitlines()  # one line, warnings included
    assert error.startswith("error: ") and "Traceback" not in run.stdout
    for part in expected:
        assert part.format(tmp=tmp_path) in error
    assert SECRET not in run.stdout + run.stderr
    assert _files(tmp_path) == before  # no storage, data cache, results or Hydra folder
