"""Every class of bad input, fault and signal, through the real command line
(docs/reliability.md): the exit status, exactly one line on stderr, no traceback, nothing written
outside reports/ and results/ (and for a refused command nothing at all), no credential in any
file the run wrote, and the study unchanged or repaired. In-process tables of the same classes:
tests/test_config.py (values and names) and tests/test_data.py (images and the cache)."""

import contextlib
import io
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from optuna_dashboard._note import get_note_from_system_attrs
from PIL import Image

from study.design.spec import SPEC_ATTR
from study.runs.storage import open_storage, open_study
from study.stats.frames import ACCURACY
from study.stats.synthetic import ofat_spec, ofat_table, study_from_table
from study.training.data import load_cifar10, synthetic_images
from tests.conftest import compose, spec_of
from tests.design.test_spec import _legacy_study, before_exact_statistics
from tests.forked import run_forked
from tests.training.test_data import (
    _damage,
    _png,
    _png_header,
    _tar,
    _ten_classes,
    _write_image_folder,
)

STUDY = ["budget=smoke", "data=synthetic"]
ONE_LEVEL = [f"sweep.levels.{name}=[{level}]" for name, level in (
    ("channels", 8), ("activation", "relu"), ("pooling", "max"), ("dropout", 0.5),
    ("preprocessing", "standardize"), ("batch_size", 128))]
TINY = [*STUDY, "model.channels=8", *ONE_LEVEL, "sweep.levels.lr=[0.05,0.1]",
        "sweep.baseline_seeds=1"]  # 2 points, one trial each
SECRET = "s3cret-pw"
POSTGRES = os.environ.get("STUDY_POSTGRES_URL")  # .ci/postgres: its password is study-ci


def _files(root: Path) -> dict[str, int | None]:
    """Every file (its modification time) and folder (None) under root."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns if p.is_file() else None
            for p in root.rglob("*")}


def _written_outside_outputs(root: Path, before: dict[str, int]) -> list[str]:
    """Files the run added or changed anywhere but under reports/ and results/."""
    return [name for name, mtime in _files(root).items() if mtime is not None and
            before.get(name) != mtime and Path(name).parts[0] not in ("reports", "results")]


ADDRESS_SPACE = 6_000_000_000  # bytes (ulimit -v): torch starts, a 1024-channel CNN cannot train


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _run(app: str, arguments: list[str], cwd: Path, timeout: int = 300,
         limit_memory: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_PATH"}
    return subprocess.run([sys.executable, "-m", f"study.{app}", *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=_limit_memory if limit_memory else None)


def _one_line(run: subprocess.CompletedProcess, code: int) -> str:
    assert run.returncode == code, run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr[-3000:]  # one line: no traceback, no warnings
    return lines[0]


# (class, app, arguments, folder it runs in, parts of the one-line error); {tmp} is the test's
# folder. Each is refused before any training, after Hydra made its run folder (which must then
# be gone again) or before.
REFUSED = [
    ("config", "sweep", ["+sweep.levels.momentum=[0.9]"], ".", ["unknown factor", "channels"]),
    ("config", "sweep", ["train.compile=graph"], ".", ["needs a CUDA GPU"]),
    ("config", "sweep", ["sweep=optuna", "sweep.until=decided"], ".",
     ["sweep.until=decided is not allowed with sweep.design=optuna", "(ofat, grid)"]),
    ("name", "sweep", [*STUDY, "name=../../etc/evil"], ".",
     ["name='../../etc/evil' is not allowed", "letters, digits and '-_.'"]),
    ("name", "sweep", [*STUDY, "name=${oc.env:HOME}"], ".", ["is not allowed", "100 letters"]),
    ("secret", "sweep", [*STUDY, f"storage=postgresql://ann:{SECRET}@127.0.0.1:1/db"], ".",
     ["storage postgresql://ann:***@127.0.0.1:1/db: connection failed"]),
    ("secret", "sweep", [*STUDY, f"storage='postgresql://ann@127.0.0.1:1/db?password={SECRET}'"],
     ".", ["storage postgresql://ann@127.0.0.1:1/db?password=***: connection failed"]),
    ("secret", "sweep", [*STUDY, f"storage=postgresql://ann:p@{SECRET}:99@127.0.0.1:1/db"], ".",
     ["storage postgresql://ann:***@127.0.0.1:1/db: connection failed"]),  # '@' then ':'
    ("secret", "sweep", [*STUDY, f"storage=postgresql://ann:p@{SECRET}/w0rd@127.0.0.1:1/db"],
     ".", ["storage postgresql://ann:***@127.0.0.1:1/db: connection failed"]),  # '@' then '/'
    ("config", "sweep", [*STUDY, "data.path=/tmp/my", "data/x.tar.gz"], ".",  # unquoted space
     ["'data/x.tar.gz' is not an override (key=value); if it is the rest of "
      "'data.path=/tmp/my', quote the whole: \"data.path=/tmp/my data/x.tar.gz\""]),
    ("non-finite", "train", [*STUDY, "train.lr=nan"], ".", ["train.lr=nan is not allowed"]),
    ("huge", "sweep", [*STUDY, "model.channels=100000"], ".",
     ["the baseline needs about 42,673.0 GiB to train", "choose smaller levels"]),
    ("huge", "sweep", [*STUDY, "sweep.levels.channels=[8,100000]"], ".",
     ["channels=100000 needs about 42,673.0 GiB to train"]),
    ("huge", "sweep", [*STUDY, "sweep=optuna", "sweep.levels.channels=[8,100000]"], ".",
     ["channels=100000 needs about 42,673.0 GiB to train"]),  # the end of a sampled range
    ("huge", "train", [*STUDY, "model.channels=100000"], ".",
     ["this run's network needs about 42,673.0 GiB to train"]),
    ("huge", "sweep", [*STUDY, "sweep.workers=1000"], ".",
     ["sweep.workers=1000: each worker process holds at least 1.0 GiB (torch, the study and its "
      "712 images); this machine has", "GiB available, enough for"]),
    ("huge", "sweep", [*STUDY, "data.synthetic_train=100000000"], ".",
     ["data.synthetic_train=100000000 is not allowed: must be an integer >= 10 and <= 100000"]),
    ("size", "sweep", [*STUDY, "sweep.seeds=100000"], ".",
     ["the design has 2500000 trials (25 points x 100000 seed(s)), more than "
      "sweep.max_trials=5000", "pass sweep.max_trials=2500000 to run it"]),
    ("meaning", "sweep", [*STUDY, "data.train_subset=300"], ".",
     ["sweep.levels.batch_size level 512 is more than the 300 training images"]),
    ("identity", "sweep", [*STUDY, "storage=sqlite:///{tmp}/old.db", "name=taken",
                           "model.activation=gelu"], ".",
     ["study 'taken' was created with model.activation=relu; this run has "
      "model.activation=gelu: choose another name=", "--storage sqlite:///{tmp}/old.db"]),
    ("identity", "sweep", [*STUDY, "storage=sqlite:///{tmp}/bn.db", "name=before-bn"], ".",
     ["study 'before-bn' was created with train.bn_stats=running", "this run has "
      "train.bn_stats=exact"]),
    ("identity", "sweep", [*STUDY, "storage=sqlite:///{tmp}/old.db", "name=old"], ".",
     ["study 'old' was made by an older version", "can be reported", "choose another name="]),
    ("outputs", "sweep", STUDY, "reports_is_a_file",
     ["reports: reports is not a folder, so reports/ofat-smoke cannot be written"]),
    ("outputs", "sweep", STUDY, "results_is_a_file", ["hydra.run.dir: results is not a folder"]),
    ("outputs", "sweep", [*STUDY, "storage=sqlite:///{tmp}/a_file/db/study.db"], ".",
     ["storage: {tmp}/a_file is not a folder"]),
    ("outputs", "report", ["storage=sqlite:///{tmp}/old.db", "name=nope"], ".",
     ["no study named 'nope'", "studies there: old, taken"]),
    ("outputs", "report", ["storage=sqlite:///{tmp}/new/dir/study.db", "name=nope"], ".",
     ["no storage at {tmp}/new/dir/study.db"]),
    ("images", "sweep", ["data.source=cifar10", "data.path={tmp}/corrupt.tar.gz"], ".",
     ["corrupt.tar.gz"]),
    ("images", "sweep", ["data.source=cifar10", "data.path={tmp}/flipped.tar.gz"], ".",
     ["cannot read archive {tmp}/flipped.tar.gz: it is corrupt", "copy or download it again"]),
    ("images", "sweep", ["data.source=cifar10", "data.path={tmp}/bomb.tar.gz"], ".",
     ["{tmp}/bomb.tar.gz: cifar/train/class3/huge.png", "DecompressionBombError"]),
    ("images", "sweep", ["data.source=cifar10", "data.path={tmp}/twelve.tar.gz"], ".",
     ["{tmp}/twelve.tar.gz has 12 class folders (class0", "CIFAR-10 has 10"]),
    ("images", "sweep", [*STUDY, "data.train_subset=5000"], ".",
     ["data.train_subset=5000 is more than the 2000 train images of synthetic"]),
    ("storage", "sweep", [*STUDY, "storage=sqlite:///{tmp}/corrupt.db"], ".",
     ["storage sqlite:///{tmp}/corrupt.db: database disk image is malformed",
      "restore the database from a backup"]),
    ("storage", "report", ["storage=sqlite:///{tmp}/corrupt.db", "name=taken"], ".",
     ["storage sqlite:///{tmp}/corrupt.db: database disk image is malformed"]),
    ("storage", "sweep", [*STUDY, "storage='sqlite:///file:{tmp}/old.db?mode=ro&uri=true'"], ".",
     ["attempt to write a readonly database; make it writable, or choose another storage="]),
    ("storage", "train", [*STUDY, "storage=sqlite://"], ".",
     ["storage=sqlite:// is an in-memory database: no trial would persist"]),
    ("spec", "sweep", [*STUDY, "storage=sqlite:///{tmp}/specs.db", "name=shape"], ".",
     ["study 'shape' records a spec this code cannot read (a list, not a record)"]),
    ("spec", "report", ["storage=sqlite:///{tmp}/specs.db", "name=keys"], ".",
     ["study 'keys' records a spec this code cannot read (Key 'bogus' not in 'StudySpec')"]),
    ("spec", "sweep", [*STUDY, "storage=sqlite:///{tmp}/specs.db", "name=missing"], ".",
     ["study 'missing' records a spec", "missing mandatory value: factors"]),
    *[("spec", app, [*(STUDY if app == "sweep" else []), "storage=sqlite:///{tmp}/specs.db",
                     f"name={name}"], ".", [f"study '{name}' records a spec this code cannot "
                                            f"read ({problem}"])
      for app, (name, problem) in zip(["sweep", "report"] * 4, [
          ("look-empty", "look_log[0]: Structured config of type `Look` has missing mandatory "
                         "value: look"),
          ("look-alpha", "look_log[0]: Value 'often' of type 'str' could not be converted to "
                         "Float"),
          ("look-added", "look_log[0]: Cannot assign str to Dict[str, int]"),
          ("history-empty", "history[0]: Structured config of type `Growth` has missing "
                            "mandatory value: at"),
          ("levels-none", "factor lr has no levels"),
          ("baseline-off", "factor lr: baseline 7.0 is not one of its levels"),
          ("added-where", "seeds added at 'lr=9.9', which is no design point")], strict=False)],
]


def _refusing_folder(folder: Path) -> Path:
    """A folder with something for every refused case to trip on."""
    (folder / "corrupt.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    png = _png(32)
    _tar(folder / "bomb.tar.gz", _ten_classes(png, "cifar/", **{
        "train/class3/huge.png": _png_header(30_000, 30_000)}))
    _tar(folder / "twelve.tar.gz", _ten_classes(png, **{f"{split}/extra{c}/0.png": png
                                                       for split in ("train", "test")
                                                       for c in (1, 2)}))
    _tar(folder / "flipped.tar.gz", _ten_classes(_noise_png(), "cifar/"))
    _flip_a_bit(folder / "flipped.tar.gz")
    (folder / "a_file").write_text("")
    for blocked in ("reports", "results"):
        (folder / f"{blocked}_is_a_file").mkdir()
        (folder / f"{blocked}_is_a_file" / blocked).write_text("")
    _legacy_study(f"sqlite:///{folder}/old.db")
    taken = compose(*STUDY, f"storage=sqlite:///{folder}/old.db", "name=taken")
    fingerprint = synthetic_images(taken.data.synthetic_train, taken.data.synthetic_test)
    spec = spec_of(taken, fingerprint.fingerprint)
    open_study(taken, open_storage(taken.storage), spec)
    before_exact_statistics(f"sqlite:///{folder}/bn.db", overrides=tuple(STUDY),
                            fingerprint=fingerprint.fingerprint)
    shutil.copy(folder / "old.db", folder / "corrupt.db")
    with open(folder / "corrupt.db", "r+b") as database:  # one page of a table overwritten
        database.seek(2 * 4096)
        database.write(b"\xab" * 600)
    for name, stored in (("shape", [1, 2]), ("keys", spec.to_dict() | {"bogus": 1}),
                         ("missing", {k: v for k, v in spec.to_dict().items() if k != "factors"}),
                         *_nested_garbage(spec.to_dict()).items()):
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder}/specs.db")
        study.set_user_attr(SPEC_ATTR, stored)
    return folder


def _noise_png() -> bytes:
    """A 32x32 PNG of random pixels: it does not compress away, so a flipped bit lands in it."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _flip_a_bit(path: Path) -> None:
    """One bit flipped in the middle of the file, as a bad disk or copy does."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


LOOK = {"look": 1, "trials": 3, "alpha": 0.0125, "undecided": ["lr"], "added": {"lr=0.1": 2}}


def _nested_garbage(spec: dict) -> dict[str, dict]:
    """Stored specs whose top level is right and something inside is not (study name -> spec)."""
    lr = spec["factors"]["lr"]
    return {"look-empty": spec | {"look_log": [{}]},
            "look-alpha": spec | {"look_log": [LOOK | {"alpha": "often"}]},
            "look-added": spec | {"look_log": [LOOK | {"added": "lr=0.1"}]},
            "history-empty": spec | {"history": [{}]},
            "levels-none": spec | {"factors": spec["factors"] | {"lr": lr | {"levels": []}}},
            "baseline-off": spec | {"factors": spec["factors"] | {"lr": lr | {"baseline": 7.0}}},
            "added-where": spec | {"added_seeds": {"lr=9.9": [5]}}}


@dataclass
class Refused:
    folder: Path
    before: dict[str, int | None]  # its files before the command
    run: subprocess.CompletedProcess
    after: dict[str, int | None]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> list[Refused]:
    """Every REFUSED command, each in a folder of its own, two at a time, each a process
    forked from one that imported the study once (tests.forked: a fresh interpreter per command
    spent most of this test's two minutes importing torch)."""
    template = _refusing_folder(tmp_path_factory.mktemp("template"))
    folders = []
    for _ in REFUSED:
        folders.append(tmp_path_factory.mktemp("refused"))
        shutil.copytree(template, folders[-1], dirs_exist_ok=True)
    before = [_files(folder) for folder in folders]
    commands = [(app, [a.replace("{tmp}", str(tmp)) for a in arguments], tmp / folder)
                for (_, app, arguments, folder, _), tmp in zip(REFUSED, folders, strict=True)]
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_PATH"}
    runs = run_forked(commands, tmp_path_factory.mktemp("logs"), env)
    return [Refused(folder, files, run, _files(folder))
            for folder, files, run in zip(folders, before, runs, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize(("index", "expected"), [(i, c[4]) for i, c in enumerate(REFUSED)],
                         ids=[f"{c[0]}: {c[1]} {' '.join(c[2])} in {c[3]}" for c in REFUSED])
def test_a_refused_command_is_one_line_and_writes_nothing(refused: list[Refused], index: int,
                                                          expected: list[str]) -> None:
    case = refused[index]
    error = _one_line(case.run, 2)
    assert error.startswith("error: ") and "Traceback" not in case.run.stdout
    for part in expected:
        assert part.replace("{tmp}", str(case.folder)) in error
    assert SECRET not in case.run.stdout + case.run.stderr
    assert case.after == case.before  # no storage, data cache, results, report or Hydra folder


def test_a_memory_limit_too_low_for_torch_is_one_line(tmp_path) -> None:
    def limit() -> None:  # address space for Python, not for torch's libraries
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))

    run = subprocess.run([sys.executable, "-m", "study.sweep", *STUDY], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, preexec_fn=limit)
    error = _one_line(run, 2)
    assert error.startswith("error: cannot start: ") and "(ulimit -v) is too low" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_path_that_is_not_text_in_the_locale_is_one_line(tmp_path) -> None:
    """A non-ASCII storage path under the C locale without Python's UTF-8 mode."""
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_PATH"} | {
        "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    path = os.fsencode(tmp_path) + "/dé/s.db".encode()
    run = subprocess.run([os.fsencode(sys.executable), b"-m", b"study.sweep", *map(
        str.encode, STUDY), b"storage=sqlite:///" + path], cwd=tmp_path, capture_output=True,
        timeout=120, env=env)
    error = _one_line(subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(),
                                                  run.stderr.decode()), 2)
    assert "is not text in this locale: run with a UTF-8 locale" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "expected"), [
    ([], "all 2 trials failed"),
    pytest.param(["sweep.max_failures=1"], "stopped after 1 failed trial (sweep.max_failures=1)",
                 marks=pytest.mark.heavy),
])
def test_failing_trials_are_listed_and_the_error_line_says_so(tmp_path, overrides: list[str],
                                                              expected: str) -> None:
    """Trials that run out of memory (the networks fit the machine, not the address space the
    run is limited to) are failed trials with their reason."""
    big = ["model.channels=1024", "sweep.levels.channels=[1024]"]  # about 16 GiB to train
    run = _run("sweep", [*TINY, *big, "name=fails", *overrides], tmp_path, limit_memory=True)
    error = _one_line(run, 2)
    assert error.startswith(f"error: {expected}; most common reason: RuntimeError")
    assert "reports/fails/report.md lists every failed trial with its reason" in error
    study = optuna.load_study(study_name="fails",
                              storage=f"sqlite:///{tmp_path}/results/optuna.db")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    report = (tmp_path / "reports" / "fails" / "report.md").read_text()
    for trial in failed:
        assert f"| {trial.number} | failed |" in report
    assert len(failed) == (1 if overrides else 2) and "can't allocate memory" in report
    assert _written_outside_outputs(tmp_path, {}) == []


@pytest.mark.heavy
@pytest.mark.slow
def test_a_failing_trial_of_the_train_app_is_recorded_and_one_line(tmp_path) -> None:
    run = _run("train", [*STUDY, "model.channels=1024", "name=one"], tmp_path,
               limit_memory=True)
    error = _one_line(run, 2)
    assert error.startswith("error: trial 0 of study one failed and is recorded with its "
                            "reason: RuntimeError: ") and "can't allocate memory" in error
    [trial] = optuna.load_study(study_name="one",
                                storage=f"sqlite:///{tmp_path}/results/optuna.db").trials
    assert trial.state == TrialState.FAIL and "can't allocate" in trial.user_attrs["reason"]


MATHTEXT = "$\\undefinedmacro{x$"  # drawn as mathtext, matplotlib cannot parse it
REPORTED = {  # a study's shape -> the non-baseline levels of its one varied factor
    "only the baseline finished": {"lr": [0.1]},
    "every trial diverged": {"lr": [0.1]},
    "a level label that is mathtext": {"activation": [MATHTEXT]},
}


def _mathtext_study(url: str) -> None:
    """A study as another tool (or an older version) wrote it, without a spec: the report reads
    its factors and levels from the trials, whatever their labels."""
    study = optuna.create_study(study_name="t", storage=url, direction="maximize")
    space = {"activation": optuna.distributions.CategoricalDistribution(["relu", MATHTEXT])}
    for seed in range(2):
        for point, level in (("baseline", "relu"), (f"activation={MATHTEXT}", MATHTEXT)):
            study.add_trial(optuna.trial.create_trial(
                params={"activation": level}, distributions=space, value=0.5 + 0.01 * seed,
                user_attrs={"design_point": point, "seed": seed, "outcome": "complete"}))


def _diverged_study(url: str) -> None:
    """Every trial diverged in its first epoch, recorded as the sweep records such a trial: no
    training curve."""
    spec = ofat_spec(REPORTED["every trial diverged"])
    study = optuna.create_study(study_name="t", storage=url, direction="maximize")
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    for seed in range(2):
        for point in spec.points():
            study.add_trial(optuna.trial.create_trial(
                params=point.params, distributions=spec.distributions(), value=0.1,
                user_attrs={"design_point": point.id, "seed": seed, "outcome": "diverged",
                            "reason": "its training loss was not finite by step 4",
                            "train_loss": [], "train_accuracy": []}))


def _reported_study(folder: Path, shape: str) -> str:
    """A study of `shape` in folder/s.db, recorded as the sweep records one; its storage URL."""
    url = f"sqlite:///{folder}/s.db"
    if shape in BUILT:
        BUILT[shape](url)
        return url
    levels = REPORTED[shape]
    table = ofat_table({}, noise=0.01, seeds=2, rng=np.random.default_rng(5), levels=levels)
    table.loc[table["design_point"] != "baseline", ["state", "outcome", ACCURACY]] = [
        "FAIL", "failed", None]  # only the baseline finished
    study_from_table(table, ofat_spec(levels), "t", storage=optuna.storages.RDBStorage(url))
    return url


BUILT = {"every trial diverged": _diverged_study, "a level label that is mathtext": _mathtext_study}


@pytest.mark.slow
@pytest.mark.parametrize("shape", REPORTED)
def test_a_report_renders_whatever_the_study_holds(tmp_path, shape: str) -> None:
    """python -m study.report, the dashboard's figures and note included: exit 0, nothing on
    stderr (no traceback, no warning), every figure written."""
    run = _run("report", ["name=t", f"storage={_reported_study(tmp_path, shape)}"], tmp_path)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]
    folder = tmp_path / "reports" / "t"
    factor = next(iter(REPORTED[shape]))
    report = (folder / "report.md").read_text()
    if shape == "only the baseline finished":  # no figure: the answer says why
        assert f"**{factor}**: all 2 of its non-baseline trials failed" in report
    else:
        assert (folder / f"factor_{factor}.png").stat().st_size


@pytest.mark.slow
def test_a_full_artifact_dir_is_one_line_and_the_dashboard_note_says_so(tmp_path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        with open(full / "filler", "wb") as filler, contextlib.suppress(OSError):
            filler.write(b"\0" * 128 * 1024)  # no space left
        url = _reported_study(tmp_path, "only the baseline finished")
        run = _run("report", ["name=t", f"storage={url}", f"artifact_dir={full}"], tmp_path)
    finally:
        subprocess.run(["umount", str(full)], check=True)
    error = _one_line(run, 2)
    assert error == (f"error: the report is written to reports/t, but its figures could not be "
                     f"stored for the dashboard (artifact_dir {full}: No space left on device); "
                     "the dashboard's note says so; free space there and rerun: python -m "
                     "study.report name=t")
    assert (tmp_path / "reports" / "t" / "report.md").stat().st_size
    storage = optuna.storages.RDBStorage(url)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("t"))
    note = get_note_from_system_attrs(attrs, None)["body"]
    assert note.startswith("**This study's latest report could not be attached here** "
                           f"(artifact_dir {full}: No space left on device)")


def _wait_for_training(database: Path, name: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            trials = optuna.load_study(study_name=name, storage=f"sqlite:///{database}").trials
        except KeyError:  # not created yet
            trials = []
        if any(t.state == TrialState.RUNNING and t.user_attrs.get("epochs_done") for t in trials):
            return
        time.sleep(0.2)
    raise AssertionError(f"no trial started training: {process.poll()}")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [  # the heavy tier: the same path, other signals
    (signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.heavy),
    pytest.param(signal.SIGHUP, 129, marks=pytest.mark.heavy)])
def test_ctrl_c_and_sigterm_record_the_running_trial_and_exit_with_one_line(
        tmp_path, signum: int, code: int) -> None:
    (tmp_path / "results").mkdir()
    database = tmp_path / "results" / "optuna.db"
    optuna.create_study(study_name="other", storage=f"sqlite:///{database}")  # the file exists
    command = [sys.executable, "-m", "study.sweep", *TINY, "train.epochs=100", "name=stop"]
    with subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            _wait_for_training(database, "stop", process)
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
    error = _one_line(subprocess.CompletedProcess(command, process.returncode, stdout, stderr),
                      code)
    assert error.startswith(f"interrupted by {signal.Signals(signum).name}: 0 trials of this "
                            "run finished and recorded, 1 running recorded as interrupted")
    assert error.endswith("continue with: python -m study.sweep " + " ".join(
        f"'{a}'" if "[" in a else a for a in [*TINY, "train.epochs=100", "name=stop"]))
    states = sorted((t.state.name, t.user_attrs.get("reason"))
                    for t in optuna.load_study(study_name="stop",
                                               storage=f"sqlite:///{database}").trials)
    assert states == [("FAIL", "interrupted"), ("WAITING", None)]  # nothing lost
    assert _written_outside_outputs(tmp_path, {}) == []


def _children(pid: int) -> list[int]:
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")
            if _stat(stat) and int(_stat(stat).rsplit(")", 1)[1].split()[1]) == pid]


def _stat(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # the process ended while we looked
        return ""


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that does not reap it."""
    stat = _stat(Path(f"/proc/{pid}/stat"))
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.heavy
@pytest.mark.slow
def test_workers_stop_and_record_their_trials_when_the_run_is_killed(tmp_path) -> None:
    """sweep.workers=2 and kill -9 of the run's process: within 15 s no worker is alive, and
    their trials are recorded as interrupted (a rerun trains them again)."""
    (tmp_path / "results").mkdir()
    database = tmp_path / "results" / "optuna.db"
    command = [sys.executable, "-m", "study.sweep", *TINY, "train.epochs=100", "name=orphans",
               "sweep.workers=2"]
    workers: list[int] = []  # read by `finally` even when no trial started training
    with subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        try:
            _wait_for_training(database, "orphans", process)
            workers = _children(process.pid)
            assert len(workers) >= 2
            process.kill()
            process.wait(timeout=10)
            deadline = time.monotonic() + 15
            while any(map(_alive, workers)) and time.monotonic() < deadline:
                time.sleep(0.2)
            alive = [pid for pid in workers if _alive(pid)]
        finally:
            for pid in _children(process.pid) + workers:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
    assert alive == []
    trials = optuna.load_study(study_name="orphans", storage=f"sqlite:///{database}").trials
    assert sorted((t.state.name, t.user_attrs.get("outcome")) for t in trials) == \
        [("FAIL", "interrupted")] * 2


@pytest.mark.heavy
@pytest.mark.slow
def test_a_study_poisoned_by_an_older_version_is_repaired_by_the_rerun(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/results/optuna.db"
    cfg = compose(*TINY, f"storage={storage}", "name=poisoned")
    data = synthetic_images(cfg.data.synthetic_train, cfg.data.synthetic_test)
    study, spec = open_study(cfg, open_storage(storage), spec_of(cfg, data.fingerprint))
    [baseline] = [p for p in spec.points() if p.id == "baseline"]
    study.enqueue_trial(baseline.params | {"lr": math.nan},  # as a version without checks did
                        user_attrs={"design_point": "baseline", "seed": 0})
    run = _run("sweep", [*TINY, f"storage={storage}", "name=poisoned"], tmp_path)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]
    assert "1 queued trials could not be trained and are recorded as failed (lr=nan cannot be " \
           "trained: must be a number > 0)" in run.stdout
    trials = optuna.load_study(study_name="poisoned", storage=storage).trials
    reasons = [t.user_attrs.get("reason") for t in trials if t.state == TrialState.FAIL]
    assert "lr=nan cannot be trained: must be a number > 0" in reasons
    complete = sorted(t.user_attrs["design_point"] for t in trials
                      if t.state == TrialState.COMPLETE)
    assert complete == ["baseline", "lr=0.1"]  # repaired: every point trained, once


@pytest.mark.heavy
@pytest.mark.slow
def test_a_bad_cache_is_one_warning_and_rebuilt_by_the_sweep(tmp_path) -> None:
    _write_image_folder(tmp_path / "tree", synthetic_images(200, 50))
    load_cifar10(str(tmp_path / "tree"), tmp_path / ".cache" / "study")
    [cache] = (tmp_path / ".cache" / "study").iterdir()
    _damage(cache, "truncated")
    arguments = ["data=cifar10", f"data.path={tmp_path / 'tree'}", *TINY[2:], "name=cached",
                 "budget=smoke", "data.train_subset=200", "data.test_subset=50"]
    run = _run("sweep", arguments, tmp_path)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]
    [warning] = [line for line in run.stdout.splitlines() if "data cache" in line]
    assert f"data cache {Path('.cache/study') / cache.name} is unreadable" in warning
    assert "rebuilding it from" in warning
    rebuilt = load_cifar10(str(tmp_path / "tree"), tmp_path / ".cache" / "study")
    assert len(rebuilt.y_train) == 200


@pytest.mark.slow
@pytest.mark.skipif(POSTGRES is None, reason="no PostgreSQL: export STUDY_POSTGRES_URL "
                                             "(.ci/postgres starts one)")
@pytest.mark.parametrize("form", ["user:password",
                                  pytest.param("query parameter", marks=pytest.mark.heavy)])
def test_no_file_a_run_writes_holds_the_storage_password(tmp_path, form: str) -> None:
    url = optuna.storages.RDBStorage(POSTGRES).engine.url  # checks that it is reachable
    password = url.password
    if form == "query parameter":  # libpq's ?password=, quoted for Hydra's parser
        url = f"'{url.set(password=None).render_as_string()}?password={password}'"
    else:
        url = url.render_as_string(hide_password=False)
    name = f"secret-{uuid.uuid4().hex[:8]}"
    run = _run("sweep", [*TINY, f"storage={url}", f"name={name}"], tmp_path)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]
    assert password not in run.stdout
    leaking = [str(p) for p in tmp_path.rglob("*") if p.is_file() and
               password.encode() in p.read_bytes()]
    assert leaking == []  # .hydra/*.yaml, the log, the report, the figures: none
    assert (tmp_path / "results" / "hydra" / name).is_dir()
    assert _written_outside_outputs(tmp_path, {}) == []
