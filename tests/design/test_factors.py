"""The article's factors (kernel size, convolutions per stage, hidden FC layers, normalization,
epochs), the `article` design and the cost of each design point."""

import subprocess
import sys

import optuna
import pytest
import torch
from torch import nn

from study.design.cost import point_costs
from study.design.spec import StudySpec
from study.errors import ConfigError
from study.runs.queue import enqueue_missing
from study.training.data import synthetic_images, to_device
from study.training.engine import train_trial
from study.training.model import build_model, count_parameters
from tests.conftest import compose, spec_of


def _layers(*overrides: str, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in build_model(compose(*overrides).model) if isinstance(m, kind)]


@pytest.mark.slow
def test_kernel_size_and_conv_layers_change_the_convolutions() -> None:
    assert {c.kernel_size for c in _layers("model.kernel_size=5", kind=nn.Conv2d)} == {(5, 5)}
    assert {c.padding for c in _layers("model.kernel_size=7", kind=nn.Conv2d)} == {(3, 3)}
    def conv_weights(*overrides: str) -> int:
        return sum(c.weight.numel() for c in _layers(*overrides, kind=nn.Conv2d))

    assert conv_weights("model.kernel_size=5") / conv_weights() == pytest.approx(25 / 9)
    whole = [count_parameters(build_model(compose(*o).model))
             for o in ([], ["model.kernel_size=5"])]
    assert whole[1] - whole[0] == conv_weights("model.kernel_size=5") - conv_weights()
    for per_stage in (1, 2, 3):
        convs = _layers(f"model.convs_per_stage={per_stage}", kind=nn.Conv2d)
        assert len(convs) == 3 * per_stage  # three stages, max pooling between them


@pytest.mark.slow
def test_fc_layers_sets_the_hidden_layers_before_the_logits() -> None:
    for hidden in (0, 1, 2):
        linears = _layers(f"model.fc_layers={hidden}", kind=nn.Linear)
        assert len(linears) == hidden + 1 and linears[-1].out_features == 10
        assert [lin.out_features for lin in linears[:-1]] == [256] * hidden
    assert _layers("model.fc_layers=0", kind=nn.Linear)[0].in_features == 128 * 4 * 4


@pytest.mark.slow
def test_normalization_chooses_the_layer_after_each_convolution() -> None:
    assert len(_layers(kind=nn.BatchNorm2d)) == 6 and not _layers(kind=nn.GroupNorm)
    assert not _layers("model.normalization=none", kind=nn.BatchNorm2d)
    assert all(c.bias is not None for c in _layers("model.normalization=none", kind=nn.Conv2d))
    assert all(c.bias is None for c in _layers(kind=nn.Conv2d))
    groups = _layers("model.normalization=group", kind=nn.GroupNorm)
    assert len(groups) == 6 and {g.num_groups for g in groups} == {8}
    assert {g.num_groups for g in _layers("model.normalization=layer", kind=nn.GroupNorm)} == {1}


def test_epochs_sets_the_length_of_a_trial() -> None:
    data = to_device(synthetic_images(300, 100), "standardize", torch.device("cpu"))
    for epochs in (1, 2):
        cfg = compose("data=synthetic", "model.channels=4", f"train.epochs={epochs}")
        result = train_trial(cfg, data)
        assert result.epochs_run == epochs and len(result.train_loss) == epochs


@pytest.mark.slow
@pytest.mark.parametrize(("override", "expected"), [
    ("sweep=article sweep.levels.kernel_size=[3,4]", "kernel_size level 4 is not allowed: must "
                                                     "be odd"),
    ("sweep=article sweep.levels.conv_layers=[0]", "conv_layers level 0 is not allowed"),
    ("sweep=article sweep.levels.fc_layers=[-1]", "fc_layers level -1 is not allowed"),
    ("sweep=article sweep.levels.normalization=[instance]", "batch, none, group, layer"),
    ("sweep=article sweep.levels.epochs=[0,2]", "epochs level 0 is not allowed: must be an "
                                                "integer >= 1"),
    ("model=lenet5 ~sweep.levels.dropout +sweep.levels.kernel_size=[3,5]",
     "model=lenet5 has no kernel_size"),
    ("model=alexnet +sweep.levels.fc_layers=[0,1]", "model=alexnet has no fc_layers"),
])
def test_bad_levels_of_the_new_factors_fail_with_one_line(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        compose(*override.split())
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_spec_with_the_article_factors_round_trips() -> None:
    spec = spec_of(compose("sweep=article", "budget=smoke", "data=synthetic"))
    assert len(spec.varied) == 12 and spec.factors["epochs"].levels == [1, 2]
    assert spec.factors["normalization"].levels == ["batch", "none", "group", "layer"]
    assert StudySpec.from_dict(spec.to_dict()) == spec


@pytest.mark.slow
def test_costs_follow_the_arithmetic_and_the_queue_starts_with_the_dearest(tmp_path) -> None:
    spec = spec_of(compose("sweep=article", "budget=smoke", "data=synthetic"))
    costs = point_costs(spec)
    assert costs["baseline"] == 1.0 and costs["epochs=2"] == pytest.approx(2.0)
    assert costs["channels=128"] > costs["kernel_size=7"] > costs["kernel_size=5"] > 2
    assert costs["conv_layers=1"] < costs["fc_layers=0"] < 1 == costs["lr=0.1"]
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/q.db", direction="maximize")
    enqueue_missing(study, spec)
    order = list(dict.fromkeys(t.user_attrs["design_point"] for t in study.trials))
    assert order[0] == "channels=128" and [costs[p] for p in order] == sorted(
        costs.values(), reverse=True)


@pytest.mark.heavy
@pytest.mark.slow
def test_the_article_design_trains_every_level_and_reports_twelve_factors(tmp_path) -> None:
    command = [sys.executable, "-m", "study.sweep", "sweep=article", "data=synthetic",
               "budget=smoke", "model.channels=8", "data.synthetic_train=300",
               "data.synthetic_test=100", "data.train_subset=300", "data.test_subset=100",
               "sweep.levels.batch_size=[32,64,128,256]"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="article-smoke",
                              storage=f"sqlite:///{tmp_path}/results/optuna.db")
    # channels=8 joins the four channel levels as the baseline, which has 4 seeds
    assert len(study.trials) == 34 + 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.params["normalization"] for t in study.trials} == {"batch", "none", "group",
                                                                  "layer"}
    assert {t.params["epochs"] for t in study.trials} == {1, 2}
    assert max(len(t.user_attrs["train_loss"]) for t in study.trials) == 2
    report = (tmp_path / "reports" / "article-smoke" / "report.md").read_text()
    ranking = report.split("## Ranking")[1].split("## The textbook's claim")[0]
    rows = [line for line in ranking.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 12 and all("| undetermined |" in row for row in rows)  # one seed
    claims = report.split("## The textbook's claim")[1].split("## What to tune")[0]
    assert claims.count("| not named | ") == 5
    design = report.split("## Design")[1].split("## Diverged")[0]
    points = [row.split("|")[1].strip() for row in design.splitlines() if row.startswith("| ")]
    assert points[1:4] == ["baseline", "channels=16", "channels=32"]  # design order, not cost
    assert "| kernel_size=7 | 5.2" in design  # its cost relative to the baseline
