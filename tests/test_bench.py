import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_measures_every_part_and_writes_json(tmp_path) -> None:
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "study.bench", "data=synthetic", "model.channels=8",
               "bench.images=256", "bench.tutorial_images=256", "bench.workers=[2]",
               f"bench.output={output}",
               "bench.study=['budget=smoke','data=synthetic','model.channels=8','sweep=grid',"
               "'sweep.levels.lr=[0.05]','sweep.levels.batch_size=[64,128]']"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["device"] == "cpu" and report["torch"]
    labels = [row["label"] for row in report["throughput"]]
    assert labels == ["(a) tutorial loop", "(b) engine, compile=none",
                      "(c) 2 workers, compile=none"]
    for row in report["throughput"]:
        assert row["error"] is None and row["images_per_s"] > 0 and row["images"] >= 128
    assert len(report["throughput"][2]["test_accuracy"]) == 2  # one trial per worker
    assert set(report["ratios_to_tutorial"]) == set(labels[1:])
    study = report["study"]
    assert study["trials"] == study["complete"] == 2 and study["wall_time_s"] > 0
    assert "sweep.workers=2" in study["overrides"]  # the fastest K of (c)
    assert "(a) tutorial loop" in run.stdout and "(d) study" in run.stdout
