"""The study as optuna-dashboard shows it: the real server, read through its HTTP API."""

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from study.reporting.report import write_report
from study.runs.queue import enqueue_missing
from study.runs.storage import open_storage, open_study
from study.runs.workers import run_worker
from study.training.data import synthetic_images
from tests.conftest import compose, spec_of

FACTOR_TYPES = {"activation": "CategoricalDistribution", "pooling": "CategoricalDistribution",
                "preprocessing": "CategoricalDistribution", "lr": "FloatDistribution",
                "dropout": "FloatDistribution", "batch_size": "IntDistribution",
                "channels": "IntDistribution", "kernel_size": "IntDistribution",
                "conv_layers": "IntDistribution", "fc_layers": "IntDistribution",
                "normalization": "CategoricalDistribution", "epochs": "IntDistribution"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.mark.heavy
@pytest.mark.slow
def test_dashboard_serves_the_study_its_trials_and_the_report_note(tmp_path: Path) -> None:
    storage_url = f"sqlite:///{tmp_path}/study.db"
    cfg = compose("data=synthetic", "model.channels=8", f"storage={storage_url}", "name=dash",
                  "sweep=grid", "sweep.levels.lr=[0.05,0.2]", "sweep.levels.batch_size=[64,128]",
                  "+sweep.levels.activation=[relu,tanh]", "sweep.seeds=2",  # 2: an effect
                  "train.epochs=2")  # with 512 images: every trial learns, none stalls
    storage = open_storage(cfg.storage)
    study, spec = open_study(cfg, storage, spec_of(cfg))
    enqueue_missing(study, spec)
    run_worker(cfg, spec, study, storage, synthetic_images(512, 200), torch.device("cpu"))
    for _ in range(2):  # a rewritten report replaces what the first one put on the page
        write_report(study, storage, tmp_path / "reports", tmp_path / "artifacts")
    figures = sorted(p.stem for p in (tmp_path / "reports" / "dash").glob("*.png"))

    port = _free_port()
    command = Path(sys.executable).parent / "optuna-dashboard"  # the CLI the README shows
    server = subprocess.Popen([command, "--host", "127.0.0.1",
                               "--port", str(port), "--artifact-dir", str(tmp_path / "artifacts"),
                               storage_url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/api"
        for _ in range(120):
            try:
                summaries = json.loads(_get(f"{base}/studies"))["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        else:
            pytest.fail("optuna-dashboard did not answer within a minute")
        assert [s["study_name"] for s in summaries] == ["dash"]
        shown = json.loads(_get(f"{base}/studies/{summaries[0]['study_id']}"))
        note = shown["note"]["body"]
        links = re.findall(r"!\[([a-z_]+)\]\((/artifacts/\d+/[0-9a-f-]+)\)", note)
        assert sorted(stem for stem, _ in links) == figures  # every figure, shown in the note
        for _, link in links:  # served by the dashboard itself
            assert _get(f"http://127.0.0.1:{port}{link}").startswith(b"\x89PNG")
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert len(shown["trials"]) == len(study.trials) == 16
    for trial, frozen in zip(shown["trials"], study.trials, strict=True):
        assert trial["state"] == "Complete" and trial["values"] == [frozen.value]
        params = {p["name"]: p for p in trial["params"]}
        assert {name: p["distribution"]["type"] for name, p in params.items()} == FACTOR_TYPES
        assert params["lr"]["distribution"]["log"] is True
        assert params["batch_size"]["distribution"]["log"] is True
        assert params["activation"]["param_external_value"] == frozen.params["activation"]
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {"seed", "design_point", "outcome", "train_loss", "wall_time_s"} <= set(attrs)
        assert attrs["design_point"] == frozen.user_attrs["design_point"]
    assert "## Ranking" in note and note.startswith("# Sensitivity study: dash\n\n> The "
                                                   "dashboard's built-in *Hyperparameter")
    # one artifact per figure: the rewrite drew identical files and uploaded no copies
    assert sorted(a["filename"] for a in shown["artifacts"]) == [f"{f}.png" for f in figures]
    assert shown["objective_names"] == ["test_accuracy"]
    graphs = {g["id"]: json.loads(g["graph_object"]) for g in shown["plotly_graph_objects"]}
    assert set(graphs) == {"ranking", "comparison"}  # exactly two after two reports
    ranked = {y for trace in graphs["ranking"]["data"] if trace["type"] == "bar"
              for y in trace["y"]}
    assert ranked == {"lr", "batch_size", "activation"}
    panels = [a["text"] for a in graphs["comparison"]["layout"]["annotations"]][:3]
    assert panels == ["lr", "batch_size", "activation"]  # the design's order
