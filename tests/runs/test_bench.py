import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_measures_every_part_and_writes_json(tmp_path) -> None:
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "study.bench", "data=synthetic", "model.channels=8",
               "bench.images=256", "data.train_subset=128",  # 2 epochs per trial
               "bench.tutorial_images=256", "bench.workers=[2]",
               "bench.streams=[2]",
               f"bench.output={output}",
               "bench.study=['budget=smoke','data=synthetic','model.channels=8','sweep=grid',"
               "'sweep.levels.lr=[0.05]','sweep.levels.batch_size=[64,128]']"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["device"] == "cpu" and report["torch"]
    labels = [row["label"] for row in report["throughput"]]
    assert labels == ["(a) tutorial loop", "(b) engine, compile=none",
                      "(b) engine, compile=none, tested after the last epoch only",
                      "(c) 2 workers x 2 streams, compile=none"]
    for row in report["throughput"]:
        assert row["error"] is None and row["images_per_s"] > 0 and row["images"] >= 128
    assert report["throughput"][3]["seeds"] == [0, 1, 2, 3]  # two trials in each worker
    assert report["throughput"][3]["images"] == 4 * report["throughput"][1]["images"]
    cost = report["test_every_epoch_cost"]
    assert cost["epochs"] == 2 and cost["engine"] == "none"
    assert cost["extra_s"] == pytest.approx(report["throughput"][1]["seconds"]
                                            - report["throughput"][2]["seconds"])
    assert set(report["ratios_to_tutorial"]) == set(labels[1:])
    study = report["study"]
    assert study["trials"] == study["complete"] == 2 and study["wall_time_s"] > 0
    assert {"sweep.workers=2", "sweep.streams=2"} <= set(study["overrides"])  # (c)'s K and S
    # Seed 0 trained alone in (b), again tested only at the end, then beside seed 1 in a
    # worker process of (c): on the CPU the three are bit-identical.
    assert report["repeatability"] == [{"engine": "none", "seed": 0, "spread": 0.0,
                                        "test_accuracy": [report["throughput"][1]
                                                          ["test_accuracy"][0]] * 3}]
    assert "(a) tutorial loop" in run.stdout and "(d) study" in run.stdout
    assert "(e) compile=none, seed 0 trained 3 times in (b) and (c)" in run.stdout
    assert "(f) testing after each of 2 epochs (compile=none)" in run.stdout
