import json
import subprocess
import sys

import pytest
import torch

from study.runs.benchmark import bench_images, matmul_rates
from tests.conftest import compose


@pytest.mark.heavy
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
    rows = report["throughput"]
    engine = {row["precision"]: row for row in rows[1:3]}
    best = max(engine, key=lambda precision: engine[precision]["images_per_s"])
    assert [row["label"] for row in rows] == [
        "(a) tutorial loop", "(b) engine, compile=none, fp32", "(b) engine, compile=none, bf16",
        f"(b) engine, compile=none, {best}, tested after the last epoch only",
        f"(c) 2 workers x 2 streams, compile=none, {best}"]  # the fastest (b) goes on
    for row in rows:
        assert row["error"] is None and row["images_per_s"] > 0 and row["images"] >= 128
        # the roofline: each row's arithmetic rate against the matmul rate of its precision
        assert row["gflop_per_s"] == pytest.approx(
            row["images_per_s"] * report["train_flop_per_image"] / 1e9)
        assert row["of_matmul"] == pytest.approx(
            row["gflop_per_s"] / report["matmul_gflop_per_s"][row["precision"]])
    assert report["train_flop_per_image"] > 0 and min(report["matmul_gflop_per_s"].values()) > 0
    assert rows[4]["seeds"] == [0, 1, 2, 3]  # two trials in each worker
    assert rows[4]["images"] == 4 * rows[1]["images"]
    cost = report["test_every_epoch_cost"]
    assert (cost["epochs"], cost["engine"], cost["precision"]) == (2, "none", best)
    assert cost["extra_s"] == pytest.approx(engine[best]["seconds"] - rows[3]["seconds"])
    assert set(report["ratios_to_tutorial"]) == {row["label"] for row in rows[1:]}
    study = report["study"]
    assert study["trials"] == study["complete"] == 2 and study["wall_time_s"] > 0
    assert {"sweep.workers=2", "sweep.streams=2"} <= set(study["overrides"])  # (c)'s K and S
    # Seed 0 trained alone in (b), again tested only at the end, then beside seed 1 in a
    # worker process of (c): on the CPU the three are bit-identical.
    assert report["repeatability"] == [{"engine": "none", "precision": best, "seed": 0,
                                        "spread": 0.0,
                                        "test_accuracy": [engine[best]["test_accuracy"][0]] * 3}]
    assert "(a) tutorial loop" in run.stdout and "(d) study" in run.stdout
    assert f"(e) compile=none, {best}, seed 0 trained 3 times in (b) and (c)" in run.stdout
    assert f"(f) testing after each of 2 epochs (compile=none, {best})" in run.stdout
    sizes = report["matmul_size"]
    assert (f"roofline: this device's matmul reaches {report['matmul_gflop_per_s']['fp32']:.3g} "
            f"GFLOP/s in fp32 ({sizes['fp32']}x{sizes['fp32']})") in run.stdout


def test_the_roofline_stops_growing_its_matmul_when_one_product_is_slow() -> None:
    # a tenth of 0.05 s: a 512x512 product (0.27 GFLOP) is slower than that on any CPU under
    # 50 GFLOP/s, and a 2048x2048 one on any under 3,400 GFLOP/s
    rates = matmul_rates(torch.device("cpu"), largest=4096, seconds=0.05)
    assert set(rates) == {"fp32", "bf16"}
    for size, gflop_per_s in rates.values():
        assert size in (256, 512, 1024, 2048) and gflop_per_s > 0
    assert matmul_rates(torch.device("cpu"), largest=256, seconds=0.01)["fp32"][0] == 256


def test_bench_images_above_the_data_s_size_take_all_of_it_and_keep_the_test_subset() -> None:
    # bench=gpu asks for 250,000 images: all of CIFAR-10 for five epochs, not a subset error
    cfg = compose("data=synthetic", "bench.images=100000", "data.train_subset=null")
    assert len(bench_images(cfg).y_train) == cfg.data.synthetic_train
    capped = bench_images(compose("data=synthetic", "bench.images=100", "data.train_subset=50",
                                  "data.test_subset=20"))
    assert (len(capped.y_train), len(capped.y_test)) == (50, 20)
    assert capped.source.count("subset") == 1
