"""Several worker processes, as if on several machines, sharing one study on a real PostgreSQL
server: the one `.ci/run` starts (`.ci/postgres` prints its URL into STUDY_POSTGRES_URL)."""

import os
import subprocess
import sys
import uuid
from collections import Counter

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from study.errors import UserError
from study.runs.storage import open_storage
from tests.runs.test_sweep import SMALL

URL = os.environ.get("STUDY_POSTGRES_URL")
pytestmark = pytest.mark.skipif(URL is None, reason="no PostgreSQL: export STUDY_POSTGRES_URL "
                                                    "(.ci/postgres starts one)")


@pytest.mark.heavy
@pytest.mark.slow
def test_two_sweeps_started_at_once_share_the_study_without_repeats(tmp_path) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "study.sweep", "budget=smoke", "sweep.seeds=2",
               f"storage={URL}", f"name={name}", *SMALL]
    # two "machines": one with 2 worker processes, one with 1, started together
    machines = [subprocess.Popen([*command, f"sweep.workers={workers}"], cwd=tmp_path / str(i),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for i, workers in enumerate((2, 1)) if (tmp_path / str(i)).mkdir() is None]
    outputs = [machine.communicate(timeout=600)[0] for machine in machines]
    assert [m.returncode for m in machines] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    try:
        trials = optuna.load_study(study_name=name, storage=URL).trials
        # 7 points x 2 seeds and the baseline x 4 (budget smoke), each trained once
        assert len(trials) == 18 and all(t.state == TrialState.COMPLETE for t in trials)
        done = Counter((t.user_attrs["design_point"], t.user_attrs["seed"]) for t in trials)
        assert len(done) == 18 and set(done.values()) == {1}
        assert len({t.user_attrs["worker"] for t in trials}) >= 2
    finally:
        optuna.delete_study(study_name=name, storage=URL)


def test_a_wrong_password_or_an_unreachable_server_is_one_line_without_the_password() -> None:
    parsed = sqlalchemy.engine.make_url(URL)
    wrong = parsed.set(password="not-the-password").render_as_string(hide_password=False)
    unreachable = parsed.set(port=1).render_as_string(hide_password=False)
    for url, expected in ((wrong, "password authentication failed"),
                          (unreachable, "Connection refused")):
        with pytest.raises(UserError) as error:
            open_storage(url)
        message = str(error.value)
        assert expected in message and "\n" not in message
        assert "not-the-password" not in message and parsed.password not in message
