from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from study.config import FACTORS
from study.design import apply_params, baseline, distributions, fixed_points, replicate_seeds
from tests.conftest import compose


def test_ofat_expands_to_the_textbook_design() -> None:
    cfg = compose("budget=full")
    points = fixed_points(cfg)
    assert len(points) == 25 and len(replicate_seeds(cfg)) == 3  # 75 trials
    assert len({p.id for p in points}) == 25
    base = baseline(cfg)
    assert points[0].id == "baseline" and points[0].params == base
    for point in points[1:]:
        changed = [f for f in FACTORS if point.params[f] != base[f]]
        assert len(changed) == 1 and point.id == f"{changed[0]}={point.params[changed[0]]}"
    per_factor = {f: sum(p.id.startswith(f"{f}=") for p in points) for f in FACTORS}
    assert per_factor == {"channels": 3, "activation": 5, "pooling": 2, "dropout": 3,
                          "preprocessing": 3, "batch_size": 4, "lr": 4}


def test_grid_is_the_full_factorial_of_listed_factors() -> None:
    cfg = compose("sweep=grid", "+sweep.levels.activation=[relu,tanh]")
    points = fixed_points(cfg)
    assert len(points) == 3 * 3 * 2
    assert len({tuple(sorted(p.params.items())) for p in points}) == 18
    assert all(p.params["pooling"] == "max" for p in points)


def test_distributions_have_the_factors_real_types() -> None:
    space = distributions(compose())
    assert isinstance(space["activation"], CategoricalDistribution)
    assert isinstance(space["preprocessing"], CategoricalDistribution)
    assert isinstance(space["channels"], IntDistribution) and space["channels"].log
    assert (space["batch_size"].low, space["batch_size"].high) == (32, 512)
    assert isinstance(space["lr"], FloatDistribution) and space["lr"].log
    assert isinstance(space["dropout"], FloatDistribution) and not space["dropout"].log


def test_apply_params_sets_each_factor_key_and_the_seed() -> None:
    cfg = compose()
    trial_cfg = apply_params(cfg, {"activation": "tanh", "lr": 0.1, "batch_size": 64}, seed=5)
    assert (trial_cfg.model.activation, trial_cfg.train.lr, trial_cfg.train.batch_size,
            trial_cfg.train.seed) == ("tanh", 0.1, 64, 5)
    assert cfg.model.activation == "relu"  # the study's config is untouched
