"""Everything a report says is true and a rewrite never loses it (issue: the report is never
wrong, never lost): every failed, interrupted and diverged trial is listed with its reason, the
Setup compares only trials that ran, no difference is taken from a level that is not the
baseline, a study whose every trial diverged gets a whole report, and a rewrite that fails or
is interrupted part-way leaves the old report byte-identical."""

import resource
import signal
import socket
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from study.errors import Interrupted, WriteFailed
from study.outcomes import INTERRUPTED, NO_HEARTBEAT
from study.reporting import plots
from study.reporting.report import write_report
from study.stats.frames import ACCURACY, read_study
from study.stats.synthetic import (
    OFAT,
    SHAPES,
    ofat_spec,
    ofat_table,
    random_table,
    study_from_table,
)


def _study(table, spec=OFAT):
    storage = optuna.storages.InMemoryStorage()
    return study_from_table(table, spec, "t", storage=storage), storage


def _add(study, table, point: str, attrs: dict, state=TrialState.FAIL) -> int:
    """A trial at `point` as Optuna or this tool records it (attrs: its user attributes)."""
    row = table[table["design_point"] == point].iloc[0]
    params = {f: (int(row[f]) if OFAT.factors[f].kind == "int" else row[f]) for f in OFAT.factors}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=OFAT.distributions(), state=state,
        user_attrs={"design_point": point, "seed": 9} | attrs))
    return study.trials[-1].number


@pytest.mark.slow
def test_heartbeat_failures_and_interruptions_are_listed_and_never_differ(tmp_path) -> None:
    table = ofat_table({"lr": 0.03}, noise=0.01, seeds=2, rng=np.random.default_rng(0))
    study, storage = _study(table)
    lost = _add(study, table, "lr=0.1", {"worker": "host:1"})  # fail_stale_trials: no attrs
    stopped = _add(study, table, "lr=0.01", {"outcome": INTERRUPTED, "reason": INTERRUPTED})
    old = _add(study, table, "dropout=0.0", {"outcome": "failed", "reason": INTERRUPTED})
    trials = read_study(study).trials.set_index("number")
    assert trials.loc[lost, "outcome"] == "failed" and trials.loc[lost, "reason"] == NO_HEARTBEAT
    assert trials.loc[stopped, "outcome"] == trials.loc[old, "outcome"] == INTERRUPTED
    report = (write_report(study, storage, tmp_path).folder / "report.md").read_text()
    failed_table = report.split("## Diverged, stalled and failed trials")[1]
    assert f"| {lost} | failed | lr=0.1 | 9 | {NO_HEARTBEAT} |" in failed_table
    assert f"| {stopped} | interrupted | lr=0.01 | 9 | interrupted |" in failed_table
    assert f"| {old} | interrupted |" in failed_table
    devices = next(line for line in report.splitlines() if line.startswith("- Devices:"))
    assert devices == f"- Devices: table ({len(table)} trials)"  # no "unrecorded", no "differs"


@pytest.mark.slow
def test_without_a_converged_baseline_no_difference_is_taken_from_another_level(tmp_path) -> None:
    table = ofat_table({"lr": 0.05}, noise=0.01, seeds=3, rng=np.random.default_rng(1))
    table.loc[table["design_point"] == "baseline", ["outcome", ACCURACY]] = ["diverged", 0.1]
    study, storage = _study(table)
    analysis = write_report(study, storage, tmp_path).analysis
    assert analysis.differences.empty
    marked = analysis.levels[analysis.levels["baseline"]]  # the real baseline, for divergence
    assert len(marked) == len(OFAT.varied) and all(
        level == OFAT.factors[factor].baseline for factor, level in
        zip(marked["factor"], marked["level"], strict=True))
    assert (analysis.ranking["verdict"] == "undetermined").all()
    assert analysis.ranking["reason"].str.startswith(
        "its baseline level has no converged trial, so no difference from the baseline is "
        "defined").all()
    assert analysis.ranking["effect"].isna().all()
    report = (tmp_path / "t" / "report.md").read_text()
    assert "| lr | 0.1 | 0.550" not in report and "+0.0" not in report.split("## Accuracy")[1]


@pytest.mark.slow
def test_a_study_whose_every_trial_diverged_gets_a_whole_report(tmp_path) -> None:
    """Through `python -m study.report` (the overview figure crashed on it before)."""
    table = random_table("ofat", 2, 0.005, 0.0, 1.0, 0.0, 0)
    study_from_table(table, OFAT, "diverged", storage=f"sqlite:///{tmp_path}/s.db")
    run = subprocess.run([sys.executable, "-m", "study.report", "name=diverged",
                          f"storage=sqlite:///{tmp_path}/s.db"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    folder = tmp_path / "reports" / "diverged"
    report = (folder / "report.md").read_text()
    assert f"Every one of the {len(table)} finished trials diverged" in report
    assert (folder / "overview.png").stat().st_size > 0 and "## Ranking" in report
    # said in the answer, the ranking table and the advice
    assert report.count("none of its trials converged") == len(OFAT.varied) * 3
    assert "no level but the baseline" not in report
    printed = run.stdout.split("Ranking of study diverged:\n")[1].splitlines()
    assert printed[0].split()[:5] == ["factor", "rank", "(95%", "interval)", "verdict"]
    assert sorted(line.split()[0] for line in printed[1:]) == sorted(OFAT.varied)


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "raised"), [
    (OSError(28, "No space left on device"), WriteFailed),
    (Interrupted(signal.SIGTERM), Interrupted)], ids=["disk full", "SIGTERM"])
def test_a_rewrite_that_fails_part_way_leaves_the_old_report_whole(tmp_path, monkeypatch,
                                                                   fault, raised) -> None:
    table = ofat_table({"lr": 0.03}, noise=0.01, seeds=2, rng=np.random.default_rng(2),
                       levels={"lr": [0.1]})
    study, storage = _study(table, SHAPES["one level"])
    folder = write_report(study, storage, tmp_path).folder
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _add(study, table, "lr=0.1", {"outcome": "failed", "reason": "changed"})

    def fail(*_args, **_kwargs):
        raise fault

    monkeypatch.setattr(plots, "plot_time", fail)  # the last figure: most files are written
    with pytest.raises(raised):
        write_report(study, storage, tmp_path)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no half-written folder left
    monkeypatch.undo()
    killed = tmp_path / f".t.new-{socket.gethostname()}-999999999-0"  # a writer killed -9
    killed.mkdir()
    write_report(study, storage, tmp_path)
    assert "changed" in (folder / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


@pytest.mark.slow
def test_a_report_that_cannot_be_written_is_one_line_and_leaves_the_old_one(tmp_path) -> None:
    """python -m study.report under a file-size limit (a figure's write fails with EFBIG, as on
    a full disk): one line, and the report written before is byte-identical."""
    table = ofat_table({"lr": 0.03}, noise=0.01, seeds=2, rng=np.random.default_rng(4),
                       levels={"lr": [0.1]})
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db")
    study = study_from_table(table, SHAPES["one level"], "t", storage=storage)
    folder = write_report(study, storage, tmp_path / "reports").folder
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # bytes; a figure is more

    failed = subprocess.run([sys.executable, "-m", "study.report", "name=t",
                             f"storage=sqlite:///{tmp_path}/s.db"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert failed.returncode == 2 and failed.stderr == (
        "error: cannot write reports/t: File too large; the one there before is kept\n")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["t"]


PLANTED = "![leak](/etc/hostname) <img src=x> [a](http://e.x) *zem* `zcode`"


@pytest.mark.slow
def test_markup_planted_in_the_study_database_reaches_no_report_as_markup(tmp_path,
                                                                           monkeypatch) -> None:
    """Every string a shared study database holds (spec, its history, design point names,
    devices, code versions, failure reasons) through a real SQLite storage into report.md,
    report.html and the dashboard note: shown as text, and nothing but the report's own figures
    inlined."""
    import optuna_dashboard
    from markdown_it import MarkdownIt

    spec = ofat_spec({"lr": [0.1]})
    spec.created |= {"data_source": PLANTED, "device": PLANTED, "code": PLANTED}
    spec.setup |= {"data.fingerprint": PLANTED, "train.optimizer": PLANTED}
    spec.history.append({"at": PLANTED, "code": PLANTED, "levels": {"lr": [PLANTED]}})
    table = ofat_table({}, noise=0.01, seeds=2, rng=np.random.default_rng(3),
                       levels={"lr": [0.1]})
    table[["device", "code"]] = PLANTED
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db")
    study = study_from_table(table, spec, "t", storage=storage)
    _add(study, table, "baseline", {"outcome": "failed", "reason": PLANTED,
                                    "design_point": PLANTED})
    notes = []
    monkeypatch.setattr(optuna_dashboard, "save_note", lambda _study, note: notes.append(note))
    written = write_report(optuna.load_study(study_name="t", storage=storage), storage,
                           tmp_path / "reports", tmp_path / "artifacts")
    markdown = (written.folder / "report.md").read_text()
    page = (written.folder / "report.html").read_text()
    parser = MarkdownIt("commonmark").enable("table")
    for text in (markdown, notes[0]):
        rendered = parser.render(text)
        assert PLANTED.replace("<", "&lt;").replace(">", "&gt;") in rendered
        for markup in ('src="/etc/hostname"', "<img src=x>", 'href="http://e.x"', "<em>zem",
                       "<code>zcode"):
            assert markup not in rendered, markup
    assert page.count("data:image/png;base64") == len(list(written.folder.glob("*.png")))
    assert "<img src=x>" not in page and "&lt;img src=x&gt;" in page
    assert page.count("![leak](/etc/hostname)") >= 8  # setup, history, devices, reason, ...
    assert 'src="/etc/hostname"' not in page and 'href="http://e.x"' not in page
