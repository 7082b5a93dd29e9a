import pytest

from study.design.config import check_batch_sizes
from study.design.factors import FACTORS
from study.errors import ConfigError
from study.training.model import ACTIVATION_LAYERS
from tests.conftest import compose


def test_default_config_is_the_textbook_baseline() -> None:
    cfg = compose("budget=full")
    assert (cfg.model.channels, cfg.model.activation, cfg.model.pooling, cfg.model.dropout) == \
        (32, "relu", "max", 0.5)
    assert (cfg.data.preprocessing, cfg.train.batch_size, cfg.train.lr) == \
        ("standardize", 128, 0.05)
    assert (cfg.train.epochs, cfg.sweep.seeds, cfg.sweep.design) == (15, 3, "ofat")
    assert cfg.name == "ofat-full" and cfg.storage.startswith("sqlite:///results/")
    assert list(cfg.sweep.levels) == ["channels", "activation", "pooling", "dropout",
                                      "preprocessing", "batch_size", "lr"]  # the textbook's 7
    article = compose("budget=full", "sweep=article")
    assert list(article.sweep.levels) == list(FACTORS) and article.name == "article-full"
    assert list(article.sweep.levels.epochs) == [5, 10, 15, 30]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "expected"), [
    ("model.activation=swish", ["model.activation", *ACTIVATION_LAYERS]),
    ("model.pooling=median", ["model.pooling", "max, avg, stride"]),
    ("data.preprocessing=pca", ["data.preprocessing", "none, standardize, gcn, zca"]),
    ("model.dropout=1.0", ["model.dropout", "< 1"]),
    ("model.dropout=-0.1", ["model.dropout", ">= 0"]),
    ("train.batch_size=0", ["train.batch_size", ">= 1"]),
    ("train.lr=-0.1", ["train.lr", "> 0"]),
    ("train.lr=abc", ["train.lr", "Float"]),
    ("train.lr=nan", ["train.lr", "> 0"]),
    ("train.lr=NaN", ["train.lr", "> 0"]),
    ("sweep.levels.lr=[0.1,inf]", ["sweep.levels.lr", "inf", "> 0"]),
    ("model.channels=many", ["model.channels", "Integer"]),
    ("model.colour=red", ["model.colour", "activation", "channels"]),
    ("epochs=3", ["epochs", "train"]),
    ("sweep=latin", ["sweep=latin", "grid, ofat, optuna"]),
    ("budget=huge", ["budget=huge", "full, quick, smoke"]),
    ("sweep.levels.lr=[]", ["sweep.levels.lr", "non-empty"]),
    ("sweep.levels.activation=[relu,swish]", ["sweep.levels.activation", "swish", "relu"]),
    ("+sweep.levels.momentum=[0.9]", ["sweep.levels.momentum", "unknown factor", "channels"]),
    ("model.kernel_size=4", ["model.kernel_size", "odd"]),
    ("analysis.practical_effect=0", ["analysis.practical_effect", "> 0 and < 1"]),
    ("train.optimizer=rmsprop", ["train.optimizer", "sgd, adam"]),
    ("train.compile=jit", ["train.compile", "auto, none, graph, model"]),
    ("sweep.workers=0", ["sweep.workers", ">= 1"]),
    ("sweep.streams=0", ["sweep.streams", ">= 1"]),
    ("bench.workers=[1,0]", ["bench.workers", "0", ">= 1"]),
    ("bench.engines=[graph,turbo]", ["bench.engines", "turbo", "none, graph, model"]),
    ("model=lenet5", ["sweep.levels.dropout", "lenet5 has no dropout", "~sweep.levels.dropout"]),
    ("model=resnet", ["model=resnet", "alexnet, cnn, lenet5"]),
    ("model.arch=vgg", ["model.arch", "cnn, lenet5, alexnet"]),
    (("model=alexnet", "model.stages=4"), ["model.stages", "alexnet has no stages", "fc_width"]),
    # every float that reaches training is finite
    ("train.lr=inf", ["train.lr", "> 0"]),
    ("train.momentum=nan", ["train.momentum", ">= 0 and < 1"]),
    ("model.dropout=nan", ["model.dropout", ">= 0 and < 1"]),
    ("data.zca_epsilon=inf", ["data.zca_epsilon", "> 0"]),
    ("train.weight_decay=-inf", ["train.weight_decay", ">= 0"]),
    ("sweep.levels.dropout=[0.25,nan]", ["sweep.levels.dropout", "nan"]),
    # a study's name becomes a folder: one plain path component
    ("name=../../etc/evil", ["name='../../etc/evil'", "letters, digits and '-_.'"]),
    ("name=/abs/dir", ["name='/abs/dir'", "letters, digits"]),
    ("name=.hidden", ["name='.hidden'", "not starting with '.'"]),
    ("sweep.baseline_seeds=0", ["sweep.baseline_seeds", ">= 1"]),
    # compare=a,b: study names, two or more, whose joined folder name is one again
    ("compare=[ofat-quick]", ["compare", "two or more different studies"]),
    ("compare=[a,a]", ["compare", "two or more different studies"]),
    ("compare=[a,../b]", ["compare", "'../b'", "letters, digits"]),
    (f"compare=[{'a' * 60},{'b' * 60}]", ["compare", "longer than 100 characters"]),
    ("name=${oc.env:HOME}", ["is not allowed", "letters, digits"]),
    ("name='two\nlines'", ["is not allowed", "letters, digits"]),
    ("name='<img src=x onerror=alert(1)>'", ["name='<img src=x onerror=alert(1)>'"]),
    (f"name={'x' * 101}", ["1-100 letters"]),
    ("name=''", ["name=''", "1-100 letters"]),
])
def test_bad_values_fail_with_one_line_naming_key_and_allowed(override: str | tuple[str, ...],
                                                              expected: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        compose(*((override,) if isinstance(override, str) else override))
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_a_batch_size_larger_than_the_training_images_is_refused() -> None:
    cfg = compose("data=synthetic", "train.batch_size=64")
    check_batch_sizes(cfg, 512)  # the smoke budget's subset holds the largest level
    check_batch_sizes(cfg, 100, levels=False)  # study.train trains the baseline's size only
    with pytest.raises(ConfigError, match=r"sweep\.levels\.batch_size level 128 is more than the "
                                          "100 training images"):
        check_batch_sizes(cfg, 100)
    with pytest.raises(ConfigError, match=r"train\.batch_size 64 is more than the 63 training"):
        check_batch_sizes(cfg, 63, levels=False)
