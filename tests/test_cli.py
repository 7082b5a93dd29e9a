"""The commands' runner (study.cli): a bad command line is one line and writes nothing; a good
one runs as a Hydra job through Hydra's public entry points."""

import subprocess
import sys

import pytest

from study.cli import _hide_storage_secret, list_overrides


@pytest.mark.slow
def test_cli_prints_one_line_and_writes_nothing(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "study.sweep", "model.activation=swish"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert run.stderr.startswith("error: model.activation='swish' is not allowed")
    assert "Traceback" not in run.stderr + run.stdout
    assert list(tmp_path.iterdir()) == []  # no storage, no results, no Hydra output folder


PROBE = """
import logging
from study.cli import run_app

run_app(lambda cfg: logging.getLogger("study.probe").info("task saw %s %s %s", cfg.name,
                                                          cfg.model.activation, cfg.compare),
        "probe", list_keys=("compare",))
"""


@pytest.mark.slow
def test_a_checked_run_is_a_hydra_job_with_the_given_overrides(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-c", PROBE, "name=once", "model.activation=tanh",
                          "compare=a,b"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    [job] = (tmp_path / "results" / "hydra" / "once").iterdir()  # Hydra's run folder
    assert "task saw once tanh ['a', 'b']" in (job / "probe.log").read_text()  # job logging
    overrides = (job / ".hydra" / "overrides.yaml").read_text()
    assert "- model.activation=tanh" in overrides and "- compare=[a,b]" in overrides
    assert "name: probe" in (job / ".hydra" / "hydra.yaml").read_text()  # the job's name


def test_the_list_keys_take_a_bare_comma_list() -> None:
    assert list_overrides(["compare=a,b", "compare2=c,d", "+compare=e", "compare=[f]"],
                          ("compare",)) == ["compare=[a,b]", "compare2=c,d", "+compare=e",
                                            "compare=[f]"]


def test_an_interpolated_password_stays_as_written_on_the_command_line() -> None:
    """`${oc.env:VAR}` holds no secret: Hydra's saved overrides and the "continue with"
    command keep it, so that they rerun; a literal password is masked there."""
    written = "storage=postgresql://ann:${oc.env:PGPASSWORD}@db.example/study"
    assert _hide_storage_secret([written, "name=a"]) == ([written, "name=a"], None)
    literal = "storage='postgresql://ann@db.example/study?password=s3@cret'"
    assert _hide_storage_secret([literal]) == (
        ["storage='postgresql://ann@db.example/study?password=***'"],
        "postgresql://ann@db.example/study?password=s3@cret")
