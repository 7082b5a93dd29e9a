"""A study knows what it is: its spec is written once, a run of another identity is refused
without changing anything, more seeds or levels grow it, and the analysis reads the spec (or,
for a study made before specs, its trials)."""

import importlib.metadata
import subprocess

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from study.design.spec import SPEC_ATTR, StudySpec, code_version, spec_for_run, study_spec
from study.errors import UserError
from study.reporting.document import render
from study.reporting.report import write_report
from study.reporting.sections import setup_facts
from study.runs import workers
from study.runs.queue import enqueue_missing
from study.runs.storage import open_storage, open_study
from study.runs.workers import run_worker
from study.stats.fit import fit
from study.stats.frames import design_table, trials_frame
from study.training.data import synthetic_images
from tests.conftest import compose, spec_of, untrained_steps
from tests.runs.test_sweep import CPU, SMALL, finished

IMAGES = synthetic_images(200, 50)


def _open(tmp_path, *overrides: str, fingerprint: str = IMAGES.fingerprint):
    """Open (create or continue) the study `t` of the small design as a sweep would."""
    cfg = compose(*SMALL, f"storage=sqlite:///{tmp_path}/s.db", "name=t", *overrides)
    storage = open_storage(cfg.storage)
    study, spec = open_study(cfg, storage, spec_of(cfg, fingerprint))
    return cfg, storage, study, spec


def _state(study: optuna.Study) -> tuple[int, dict]:
    trials = optuna.load_study(study_name=study.study_name, storage=study._storage).trials
    return len(trials), study._storage.get_study_user_attrs(study._study_id)[SPEC_ATTR]


def test_the_spec_is_written_once_and_a_rerun_continues_the_study(tmp_path) -> None:
    _, _, study, spec = _open(tmp_path)
    stored = study.user_attrs[SPEC_ATTR]
    assert stored["version"] == 1 and stored["identity_hash"] == spec.identity_hash()
    assert stored["factors"]["epochs"]["baseline"] == 1 and stored["setup"][
        "data.fingerprint"] == "synthetic:200+50:seed1234"
    assert stored["factors"]["lr"]["levels"] == [0.05, 0.1] and stored["seeds"] == [0]
    assert StudySpec.from_dict(stored) == spec
    enqueue_missing(study, spec)
    again = _open(tmp_path)
    # 7 points x 1 seed + the baseline x 4 (budget smoke); nothing added or rewritten
    assert again[3] == spec and _state(again[2]) == (11, stored)


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "named"), [
    (["model.activation=gelu"], ["model.activation=relu", "model.activation=gelu"]),
    (["train.epochs=2"], ["train.epochs=1", "train.epochs=2"]),
    (["data.train_subset=300"], ["data.train_subset=512", "data.train_subset=300"]),
    (["model=lenet5", "~sweep.levels.dropout", "model.channels=8"], ["model.arch=cnn",
                                                                     "model.arch=lenet5"]),
    (["train=adam"], ["train.optimizer=sgd", "train.optimizer=adam"]),
    (["train.lr=0.1", "sweep.levels.lr=[0.05,0.1]"], ["train.lr=0.05", "train.lr=0.1"]),
    (["sweep=optuna"], ["sweep.design=ofat", "sweep.design=optuna"]),
    (["~sweep.levels.pooling"], ["sweep.factors="]),
    (["budget=quick", "sweep.seeds=1"], ["budget=smoke", "budget=quick"]),
    (["sweep.until=decided"], ["this run has sweep.looks=4"]),  # looks planned from the start
])
def test_a_run_of_another_identity_is_refused_and_changes_nothing(tmp_path, overrides,
                                                                   named) -> None:
    _, _, study, spec = _open(tmp_path)
    enqueue_missing(study, spec)
    before = _state(study)
    with pytest.raises(UserError) as error:
        _open(tmp_path, *overrides)
    message = str(error.value)
    assert "\n" not in message and message.startswith("study 't' was created with ")
    assert "choose another name=" in message and "optuna delete-study --study-name t" in message
    for part in named:
        assert part in message
    assert _state(study) == before


def test_other_data_is_another_study(tmp_path) -> None:
    _open(tmp_path)
    with pytest.raises(UserError, match=r"data\.fingerprint=synthetic:200"):
        _open(tmp_path, fingerprint="images:60000:0123456789ab")


def test_more_seeds_grow_the_study_and_the_analysis_uses_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(workers, "trial_steps", untrained_steps)  # the subject: bookkeeping
    cfg, storage, study, spec = _open(tmp_path)
    enqueue_missing(study, spec)
    run_worker(cfg, spec, study, storage, IMAGES, CPU)
    cfg, storage, study, spec = _open(tmp_path, "sweep.seeds=2")
    assert spec.seeds == [0, 1] and spec.history[0]["seeds"] == [1]
    assert _state(study)[1]["seeds"] == [0, 1]
    assert enqueue_missing(study, spec) == 7  # the baseline already has seed 1
    run_worker(cfg, spec, study, storage, IMAGES, CPU)
    trials = trials_frame(study, study_spec(study))
    assert set(design_table(trials)["finished"]) == {2, 4}
    assert fit(trials, study_spec(study)).noise.baseline_converged == 4
    setup = render("_setup.md.j2", setup=setup_facts(study_spec(study), trials))
    assert any(line.startswith("- Grown ") and line.endswith("added seeds 1")
               for line in setup.splitlines())
    # a run asking for fewer seeds continues the grown study; it shrinks nothing
    assert _open(tmp_path, "sweep.seeds=1")[3].seeds == [0, 1]


@pytest.mark.slow
def test_the_baseline_has_its_own_seeds_and_more_of_them_grow_the_study(tmp_path) -> None:
    study, spec = _open(tmp_path)[2:]
    assert spec.seeds == [0] and spec.baseline_seeds == [0, 1, 2, 3]
    assert enqueue_missing(study, spec) == 7 + 4 == spec.total_trials()
    study, spec = _open(tmp_path, "sweep.baseline_seeds=6")[2:]
    assert spec.baseline_seeds == list(range(6)) and spec.history[-1]["baseline_seeds"] == [4, 5]
    assert enqueue_missing(study, spec) == 2  # only the baseline's new seeds
    # more seeds everywhere than the baseline asks for: the baseline gets them too
    study, spec = _open(tmp_path, "sweep.seeds=7")[2:]
    assert spec.point_seeds("baseline") == list(range(7)) and spec.point_seeds("lr=0.1") == \
        list(range(7))
    assert enqueue_missing(study, spec) == 6 * 7 + 1
    setup = render("_setup.md.j2", setup=setup_facts(spec, trials_frame(study, spec)))
    assert "seeds: 0, 1, 2, 3, 4, 5, 6\n" in setup  # the same seeds as every point: said once
    assert "the baseline's seeds" not in setup


def test_extra_levels_grow_the_study_and_train_with_optuna_s_distributions(tmp_path, monkeypatch
                                                                           ) -> None:
    monkeypatch.setattr(workers, "trial_steps", untrained_steps)  # the subject: bookkeeping
    cfg, storage, study, spec = _open(tmp_path)
    enqueue_missing(study, spec)
    run_worker(cfg, spec, study, storage, IMAGES, CPU)
    cfg, storage, study, spec = _open(tmp_path, "sweep.levels.activation=[relu,tanh,gelu]",
                                      "sweep.levels.lr=[0.05,0.1,0.2]")
    assert spec.factors["activation"].levels == ["relu", "tanh", "gelu"]
    assert spec.history[0]["levels"] == {"activation": ["gelu"], "lr": [0.2]}
    assert enqueue_missing(study, spec) == 2
    assert finished(run_worker(cfg, spec, study, storage, IMAGES, CPU)) == 2
    ids = {t.user_attrs["design_point"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert {"activation=gelu", "lr=0.2"} <= ids


def test_a_sampler_s_levels_are_its_identity_and_more_trials_grow_it(tmp_path) -> None:
    _open(tmp_path, "sweep=optuna", "sweep.n_trials=3")
    with pytest.raises(UserError, match=r"sweep.levels.lr=\[0.05, 0.1\]"):
        _open(tmp_path, "sweep=optuna", "sweep.n_trials=3", "sweep.levels.lr=[0.05,0.2]")
    spec = _open(tmp_path, "sweep=optuna", "sweep.n_trials=5")[3]
    assert spec.n_trials == 5 and spec.total_trials() == 5


def test_train_app_jobs_share_a_study_only_with_the_same_setup(tmp_path) -> None:
    def job(*overrides: str) -> StudySpec:
        cfg = compose(*SMALL, f"storage=sqlite:///{tmp_path}/s.db", "name=jobs", *overrides)
        storage = open_storage(cfg.storage)
        return open_study(cfg, storage, spec_for_run(cfg, "hydra", IMAGES.fingerprint))[1]

    job("model.activation=relu")
    spec = job("model.activation=tanh", "train.seed=3")
    assert spec.factors["activation"].levels == ["relu", "tanh"] and spec.seeds == [0, 3]
    with pytest.raises(UserError, match=r"train\.warmup=0\.2; this run has train\.warmup=0\.1"):
        job("train.warmup=0.1")


def _legacy_study(storage: str) -> optuna.Study:
    """A study as the code before specs wrote it: design/budget/config attributes, categorical
    choices limited to the levels, a factor today's code does not have (`momentum`) and none
    of some it has (dropout, pooling, ...)."""
    study = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    study.set_user_attr("design", "ofat")
    study.set_user_attr("budget", "smoke")
    study.set_user_attr("config", {"train": {"epochs": 1, "optimizer": "sgd"}, "data": {}})
    space = {"activation": optuna.distributions.CategoricalDistribution(["relu", "tanh"]),
             "lr": optuna.distributions.FloatDistribution(0.01, 0.1, log=True),
             "momentum": optuna.distributions.FloatDistribution(0.0, 0.9)}
    base = {"activation": "relu", "lr": 0.1, "momentum": 0.9}
    points = [("baseline", base), ("activation=tanh", base | {"activation": "tanh"}),
              ("lr=0.01", base | {"lr": 0.01}), ("momentum=0.0", base | {"momentum": 0.0})]
    for seed in range(2):
        for i, (point, params) in enumerate(points):
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=space, value=0.5 + 0.1 * i + 0.01 * seed,
                user_attrs={"design_point": point, "seed": seed, "outcome": "complete",
                            "train_loss": [2.0], "train_accuracy": [0.3], "wall_time_s": 1.0,
                            "device": "cpu"}))
    return study


@pytest.mark.slow
def test_a_study_made_before_specs_is_reported_from_its_trials(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"
    study = _legacy_study(storage)
    spec = study_spec(study)
    assert not spec.recorded and spec.design == "ofat"
    assert spec.baseline == {"activation": "relu", "lr": 0.1, "momentum": 0.9}
    written = write_report(study, open_storage(storage), tmp_path / "reports")
    assert sorted(written.analysis.ranking["factor"]) == ["activation", "lr", "momentum"]
    report = (written.folder / "report.md").read_text()
    assert "records no study spec: its factors, levels and baseline are read from its trials" \
        in report
    cfg = compose(*SMALL, f"storage={storage}", "name=old")
    with pytest.raises(UserError, match="'old' was made by an older version of this tool and "
                                        "records no spec: it can be reported"):
        open_study(cfg, open_storage(storage), spec_of(cfg))


def test_a_copied_tree_records_the_commit_it_is_given(monkeypatch) -> None:
    """The GPU machine runs a copy of the tree: not installed, no .git (.ci/gpu), or an older
    .git than the tree: the commit given wins over git's."""
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.setenv("STUDY_COMMIT", "c6c5342")
    code_version.cache_clear()
    try:
        assert code_version() == "not-installed+c6c5342"
        monkeypatch.delenv("STUDY_COMMIT")
        code_version.cache_clear()
        assert code_version() == "not-installed"
        stale = subprocess.CompletedProcess([], 0, stdout="7edbf6c-dirty\n")
        monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: stale)
        code_version.cache_clear()
        assert code_version() == "not-installed+7edbf6c-dirty"
        monkeypatch.setenv("STUDY_COMMIT", "f3df480")
        code_version.cache_clear()
        assert code_version() == "not-installed+f3df480"
    finally:
        code_version.cache_clear()


def test_a_spec_from_before_train_precision_reads_as_what_its_device_trained_in() -> None:
    """The engine trained in bf16 on a GPU and in fp32 on the CPU before the precision was a
    setting: such a study continues only in that precision."""
    data = spec_of(compose(*SMALL)).to_dict()
    del data["setup"]["train.precision"]
    for device, precision in (("cpu", "fp32"), ("NVIDIA H200", "bf16")):
        data["created"]["device"] = device
        assert StudySpec.from_dict(data).setup["train.precision"] == precision


def before_exact_statistics(storage: str, train: bool = False, overrides: tuple = SMALL,
                            fingerprint: str = IMAGES.fingerprint) -> optuna.Study:
    """The study `before-bn` as the code before train.bn_stats wrote it: its spec's setup has
    neither train.bn_stats nor train.bn_images (its tests used BatchNorm's running statistics);
    with `train`, the small design's trials, run the running way."""
    cfg = compose(*overrides, f"storage={storage}", "name=before-bn", "train.bn_stats=running")
    opened = open_storage(storage)
    study, spec = open_study(cfg, opened, spec_of(cfg, fingerprint))
    if train:
        enqueue_missing(study, spec)
        run_worker(cfg, spec, study, opened, IMAGES, CPU)
    stored = study.user_attrs[SPEC_ATTR]
    for key in ("train.bn_stats", "train.bn_images"):
        del stored["setup"][key]
    study.set_user_attr(SPEC_ATTR, stored)
    return study


@pytest.mark.slow
def test_a_study_from_before_exact_statistics_continues_only_the_running_way(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"
    study = before_exact_statistics(storage, train=True)
    spec = study_spec(study)
    assert spec.setup["train.bn_stats"] == "running" and "train.bn_images" not in spec.setup
    trials_before = len(study.trials)
    with pytest.raises(UserError, match=r"'before-bn' was created with train\.bn_stats=running"
                                        r".*; this run has train\.bn_stats=exact"):
        _open(tmp_path, "name=before-bn")
    again = _open(tmp_path, "name=before-bn", "train.bn_stats=running",
                  "train.bn_images=100")  # no images are counted the running way
    assert again[3].identity() == spec.identity() and len(again[2].trials) == trials_before
    report = (write_report(study, open_storage(storage), tmp_path / "reports").folder
              / "report.md").read_text()
    assert "with BatchNorm's running statistics (`train.bn_stats=running`)" in report


# Written out here, not imported: a key moved into or out of the identity must fail this test.
BOOKKEEPING = {"data.path", "data.cache_dir", "train.seed", "train.compile",
               "train.eval_batch_size", "train.test_every_epoch"}


OTHER_CHOICE = {"data.source": "cifar10", "data.preprocessing": "zca", "model.arch": "alexnet",
                "model.activation": "gelu", "model.pooling": "avg", "model.normalization": "none",
                "train.optimizer": "adam", "train.schedule": "cosine", "train.compile": "none",
                "train.precision": "bf16", "train.bn_stats": "running"}


def _another(key: str, value):
    """A different value of the same kind."""
    if key in OTHER_CHOICE:
        return OTHER_CHOICE[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list):
        return [*value, 1]
    return 1 if value is None else f"{value}-other"


@pytest.mark.parametrize("group", ["data", "model", "train"])
def test_every_key_is_the_study_s_identity_except_where_a_trial_runs(group: str) -> None:
    """Each key of the data, model and train groups changes the identity (so a run with it
    changed is refused), except the bookkeeping ones; train.precision among the first."""
    cfg = compose(*SMALL, "train.precision=fp32")
    before = spec_for_run(cfg, cfg.sweep.design, "synthetic:test").identity()
    keys = [f"{group}.{key}" for key in cfg[group]]
    assert group != "train" or "train.precision" in keys
    for key in keys:
        changed = cfg.copy()
        OmegaConf.update(changed, key, _another(key, OmegaConf.select(cfg, key)))
        after = spec_for_run(changed, changed.sweep.design, "synthetic:test").identity()
        assert (after == before) == (key in BOOKKEEPING), key
