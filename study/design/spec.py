"""A study's spec: what the study is, written once when it is created and kept with it (the
study's user attribute `spec`, JSON, with a format version).

`StudySpec` records the design, the factors and their levels, the seeds, everything else that
changes what a trial learns (`setup`) and, for information, when and by which code it was
created and grown. Its `identity` must match for a run to continue a study; `grow` adds seeds
or levels and refuses any other change (UserError). The analysis reads the spec, never today's
code (`study_spec`); a study older than specs is read from its trials (`spec_from_trials`).
The rules, from the user's side: docs/factors-and-designs.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.distributions import CategoricalDistribution, FloatDistribution

from study.design.designs import DESIGNS, Design, DesignPoint, FactorSpec, HydraJobs, baseline
from study.design.factors import FACTORS, applicable_factors
from study.errors import UserError

SPEC_VERSION = 1
SPEC_ATTR = "spec"  # the study user attribute that holds it
# Config keys that say where or how a trial runs, not what it learns; the seed is a replicate.
NOT_IDENTITY = {"data.path", "data.cache_dir", "train.seed", "train.compile",
                "train.eval_batch_size", "train.test_every_epoch"}
SETUP_GROUPS = ("data", "model", "train")  # config groups whose keys make up the setup


@functools.cache
def code_version() -> str:
    """The package version and the git commit it runs from (`-dirty` with local changes). A
    copy of the tree (the GPU machine's) takes the commit from the environment variable
    STUDY_COMMIT, before any .git the copy carries: the lent H200's copy held an older commit's
    .git and would have recorded that commit, dirty."""
    try:
        version = importlib.metadata.version("cnn-sensitivity-study")
    except importlib.metadata.PackageNotFoundError:
        version = "not-installed"
    commit = os.environ.get("STUDY_COMMIT") or git_commit()
    return f"{version}+{commit}" if commit else version


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                             capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Look:
    """One look at a study's verdicts and what it added (study.stats.replication plans it; the
    spec's look_log records it as a plain record of these fields)."""

    look: int  # 1 = the design's own trials
    trials: int  # finished trials it saw
    alpha: float  # the error rate its claims were tested at
    undecided: list[str]  # factors likely or undetermined at this look
    added: dict[str, int] = field(default_factory=dict)  # design point -> seeds added
    skipped: dict[str, str] = field(default_factory=dict)  # undecided factor -> why no seeds
    stop: str | None = None  # why the study stopped here; None: it goes on
    at: str = field(default_factory=now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Growth:
    """One entry of a spec's history: what a run added to the study, when, by which code (the
    keys of what was not added are absent)."""

    at: str
    code: str
    seeds: list[int] | None = None
    baseline_seeds: list[int] | None = None
    levels: dict[str, list[Any]] | None = None
    n_trials: int | None = None


@dataclass
class StudySpec:
    design: str
    factors: dict[str, FactorSpec]  # the varied ones first, in sweep.levels order
    seeds: list[int]  # replicate seeds (fixed designs), the seed base (sampler), jobs' seeds
    setup: dict[str, Any]  # config key -> value, data.fingerprint and budget included
    sampler: str | None = None  # sampled designs
    n_trials: int | None = None  # sampled designs: trials in all
    created: dict[str, Any] = field(default_factory=dict)  # at, code, device, ... (information)
    history: list[dict[str, Any]] = field(default_factory=list)  # what was added when
    baseline_seeds: list[int] = field(default_factory=list)  # ofat's baseline point; [] = seeds
    looks: int | None = None  # sweep.until=decided: the looks planned (each tests at ALPHA/looks)
    added_seeds: dict[str, list[int]] = field(default_factory=dict)  # by the looks, per point
    look_log: list[dict[str, Any]] = field(default_factory=list)  # each look: what and why
    version: int = SPEC_VERSION
    recorded: bool = True  # False: rebuilt from the trials of a study that has no spec

    @property
    def plan(self) -> Design:
        """The design's rules (study.design.designs): its points, how it compares levels."""
        return DESIGNS[self.design]

    @property
    def baseline(self) -> dict[str, Any]:
        return baseline(self.factors)

    def setting(self, key: str) -> Any:
        """A config key's value for the study: from the setup, or the baseline of the factor
        with that key (a key that became a factor left the setup, e.g. train.epochs)."""
        if key in self.setup:
            return self.setup[key]
        return next((f.baseline for f in self.factors.values() if f.key == key), None)

    @property
    def varied(self) -> list[str]:
        return [name for name, factor in self.factors.items() if factor.varied]

    def points(self) -> list[DesignPoint]:
        return self.plan.points(self.factors)

    def point_seeds(self, point_id: str) -> list[int]:
        """The seeds a fixed design's point is replicated over: the design's, and those its
        looks added (sweep.until=decided)."""
        planned = (self.baseline_seeds or self.seeds) if point_id == "baseline" else self.seeds
        return sorted({*planned, *self.added_seeds.get(point_id, [])})

    def total_trials(self) -> int:
        if self.plan.fixed:
            return sum(len(self.point_seeds(point.id)) for point in self.points())
        return self.plan.total_trials(self.n_trials)

    def identity(self) -> dict[str, Any]:
        """What must match for a run to continue the study: config key -> value, the setup
        first (what a refusal names first)."""
        design = self.plan
        ident: dict[str, Any] = {**self.setup, "sweep.design": self.design}
        if design.sampled:
            ident |= {"sweep.sampler": self.sampler, "train.seed": self.seeds[0]}
        if self.looks:  # its looks' error rates are planned from the start: never changed
            ident["sweep.looks"] = self.looks
        if ident.get("train.bn_stats") == "running":  # training's own statistics: none computed
            ident.pop("train.bn_images", None)
        varied = {name: f for name, f in self.factors.items() if f.varied}
        ident["sweep.factors"] = ",".join(varied)
        ident["sweep.factor_kinds"] = ",".join(f"{f.kind}{'/log' if f.log else ''}"
                                               for f in varied.values())
        for name, factor in self.factors.items():
            if design.fixes_baseline(factor):
                ident[factor.key] = factor.baseline
            if design.sampled and factor.varied:
                ident[f"sweep.levels.{name}"] = factor.levels
        return ident

    def identity_hash(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """How Optuna records each factor of a study this code runs (its factors are the
        registry's: a study with others is another identity)."""
        return {name: FACTORS[name].distribution(f.levels, self.plan.sampled)
                for name, f in self.factors.items()}

    def trial_config(self, cfg: DictConfig, params: dict[str, Any], seed: int) -> DictConfig:
        """A copy of cfg with the trial's factor values and seed."""
        trial_cfg = cfg.copy()
        for name, value in params.items():
            OmegaConf.update(trial_cfg, self.factors[name].key, value)
        trial_cfg.train.seed = seed
        return trial_cfg

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["recorded"]
        return data | {"identity_hash": self.identity_hash()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        fields = {k: v for k, v in data.items() if k != "identity_hash"}
        fields["factors"] = {name: FactorSpec(**f) for name, f in data["factors"].items()}
        setup = fields["setup"]
        if "train.precision" not in setup and any(k.startswith("train.") for k in setup):
            # recorded before train.precision existed, when the engine trained in bf16 on a GPU
            # and in fp32 on the CPU: a run continues such a study only in the same precision
            on_cpu = data.get("created", {}).get("device", "cpu") == "cpu"
            fields["setup"] = setup | {"train.precision": "fp32" if on_cpu else "bf16"}
        if "train.bn_stats" not in fields["setup"] and any(k.startswith("train.") for k in setup):
            # recorded before train.bn_stats existed, when every test used the running statistics
            fields["setup"] = fields["setup"] | {"train.bn_stats": "running"}
        return cls(**fields)

    def grow(self, run: StudySpec, name: str, storage: str) -> StudySpec:
        """This stored spec, continued by a run with spec `run`: the union of their seeds and
        levels, with what the run added in the history. UserError when their identities differ
        (`name` and `storage` say which study)."""
        stored_identity, run_identity = self.identity(), run.identity()
        differing = [k for k in dict.fromkeys([*run_identity, *stored_identity])
                     if stored_identity.get(k) != run_identity.get(k)][:3]
        if differing:
            was = ", ".join(f"{k}={_show(stored_identity.get(k))}" for k in differing)
            now_ = ", ".join(f"{k}={_show(run_identity.get(k))}" for k in differing)
            raise UserError(f"study {name!r} was created with {was}; this run has {now_}: choose "
                            f"another name=... (or delete the study: optuna delete-study "
                            f"--study-name {name} --storage {storage})")
        added: dict[str, Any] = {}
        seeds, baseline_seeds = self.seeds, self.baseline_seeds
        if not self.plan.sampled:
            if new_seeds := [s for s in run.seeds if s not in self.seeds]:
                seeds, added["seeds"] = sorted([*self.seeds, *new_seeds]), new_seeds
            stored_base = self.point_seeds("baseline")
            if run.baseline_seeds and (new_base := [s for s in run.baseline_seeds
                                                    if s not in stored_base]):
                baseline_seeds = sorted([*stored_base, *new_base])
                added["baseline_seeds"] = new_base
            factors = {}
            for fname, factor in self.factors.items():
                new = [v for v in run.factors[fname].levels if v not in factor.levels]
                factors[fname] = replace(factor, levels=design_order(factor.kind,
                                                                     [*factor.levels, *new]))
                if new:
                    added.setdefault("levels", {})[fname] = new
        else:
            factors = self.factors
            if (run.n_trials or 0) > (self.n_trials or 0):
                added["n_trials"] = run.n_trials
        if not added:
            return self
        return replace(self, seeds=seeds, baseline_seeds=baseline_seeds, factors=factors,
                       n_trials=max(self.n_trials or 0, run.n_trials or 0) or None,
                       history=[*self.history, {"at": now(), "code": code_version(), **added}])


def design_order(kind: str, levels: list[Any]) -> list[Any]:
    """Numbers ascending; categories as the design lists them (never alphabetical)."""
    return levels if kind == "categorical" else sorted(levels)


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


def spec_for_run(cfg: DictConfig, design: str, data_fingerprint: str,
                 created: dict[str, Any] | None = None) -> StudySpec:
    """The spec of what this run's config trains."""
    plan = DESIGNS[design]
    present = applicable_factors(cfg)
    listed = {} if plan.varies_every_factor else dict(cfg.sweep.levels)
    factors = {}
    for name in [*listed, *(n for n in present if n not in listed)]:
        factor = present[name]
        base = factor.value(OmegaConf.select(cfg, factor.key))
        levels = ([base] if name not in listed else design_order(
            factor.kind, plan.levels([factor.value(v) for v in listed[name]], base)))
        factors[name] = FactorSpec(factor.key, factor.kind, factor.log, base, levels,
                                   varied=name in listed or plan.varies_every_factor)
    first = cfg.train.seed  # read once: a config node read costs as much as a 100-seed list
    seeds = list(range(first, first + cfg.sweep.seeds)) if plan.fixed else [first]
    baseline_seeds = (list(range(first, first + max(cfg.sweep.seeds, cfg.sweep.baseline_seeds)))
                      if plan.fixed and plan.on_slices else [])
    factor_keys = {f.key for f in FACTORS.values()}
    setup = {"budget": cfg.budget, "data.fingerprint": data_fingerprint}
    for group in SETUP_GROUPS:
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            dotted = f"{group}.{key}"
            if dotted not in NOT_IDENTITY and dotted not in factor_keys:
                setup[dotted] = value
    return StudySpec(design=design, factors=factors, seeds=seeds, setup=setup,
                     baseline_seeds=baseline_seeds,
                     looks=cfg.sweep.looks if cfg.sweep.until == "decided" else None,
                     sampler=cfg.sweep.sampler if plan.sampled else None,
                     n_trials=cfg.sweep.n_trials if plan.sampled else None,
                     created={"at": now(), "code": code_version()} | (created or {}))


def stored_spec(study_name: str, user_attrs: dict[str, Any]) -> StudySpec:
    """The spec a study was created with; UserError when it has none this code can continue."""
    data = user_attrs.get(SPEC_ATTR)
    if data is None:
        raise UserError(f"study {study_name!r} was made by an older version of this tool and "
                        "records no spec: it can be reported (python -m study.report "
                        f"name={study_name}) but not continued; choose another name=...")
    if _version(study_name, data) != SPEC_VERSION:
        raise UserError(f"study {study_name!r} has a spec of format {data.get('version')}; this "
                        f"code reads format {SPEC_VERSION}: continue it with the code that made "
                        "it, or choose another name=...")
    return read_spec(study_name, data)


def study_spec(study: optuna.Study) -> StudySpec:
    """The spec the analysis uses: the recorded one, else one rebuilt from the trials."""
    data = study.user_attrs.get(SPEC_ATTR)
    if data is not None and _version(study.study_name, data) == SPEC_VERSION:
        return read_spec(study.study_name, data)
    return spec_from_trials(study)


def _version(study_name: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise _unreadable(study_name, f"a {type(data).__name__}, not a record")
    return data.get("version")


def read_spec(study_name: str, data: dict[str, Any]) -> StudySpec:
    """The StudySpec a study's database records, checked against the schema the dataclasses
    define (OmegaConf's structured configs: every field present with its type, no unknown
    key) and the designs and kinds this code knows; UserError naming what does not fit, since
    anyone who can write to a shared database can put anything there."""
    record = {key: value for key, value in data.items() if key != "identity_hash"}
    try:
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudySpec), record))
    except OmegaConfBaseException as error:
        raise _unreadable(study_name, str(error).split("\n")[0]) from None
    if data["design"] not in DESIGNS:
        raise _unreadable(study_name, f"design {data['design']!r} is not one of "
                                      f"{', '.join(DESIGNS)}")
    kinds = {f.get("kind") for f in data["factors"].values()} - {"categorical", "int", "float"}
    if kinds:
        raise _unreadable(study_name, f"factor kind {kinds.pop()!r} is unknown")
    looks = [_record(study_name, Look, f"look_log[{i}]", entry)
             for i, entry in enumerate(data.get("look_log", []))]
    history = [{key: value for key, value in _record(study_name, Growth, f"history[{i}]",
                                                     entry).items() if value is not None}
               for i, entry in enumerate(data.get("history", []))]
    spec = StudySpec.from_dict(data | {"look_log": looks, "history": history})
    if problem := _inconsistency(spec):
        raise _unreadable(study_name, problem)
    return spec


def _record(study_name: str, schema: type, where: str, entry: Any) -> dict[str, Any]:
    """`entry` checked against the dataclass `schema` (every field with its type, no unknown
    key) and converted to its types, as a plain record."""
    try:
        return asdict(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), entry)))
    except (OmegaConfBaseException, ValueError, TypeError) as error:
        raise _unreadable(study_name, f"{where}: {str(error).splitlines()[0]}") from None


LEVEL_TYPES = {"int": (int,), "float": (int, float), "categorical": (str, int, float, bool)}


def _inconsistency(spec: StudySpec) -> str | None:
    """What in a spec of the right shape does not fit together; None when it all does."""
    for name, factor in spec.factors.items():
        wrong = [v for v in [*factor.levels, factor.baseline]
                 if not isinstance(v, LEVEL_TYPES[factor.kind]) or
                 (factor.kind != "categorical" and isinstance(v, bool))]
        if not factor.levels:
            return f"factor {name} has no levels"
        if wrong:
            return (f"factor {name}: levels {factor.levels!r} with baseline "
                    f"{factor.baseline!r} are not {factor.kind} values")
        if spec.plan.on_slices and factor.baseline not in factor.levels:
            return f"factor {name}: baseline {factor.baseline!r} is not one of its levels"
    if not spec.seeds:
        return "no seeds"
    if spec.looks is not None and spec.looks < 2:
        return f"looks={spec.looks}: a study that adds seeds plans two looks or more"
    nested = [key for key, value in spec.setup.items() if isinstance(value, dict | list)]
    if nested:
        return f"setup {nested[0]} is a {type(spec.setup[nested[0]]).__name__}, not a value"
    if spec.added_seeds:
        unknown = set(spec.added_seeds) - {point.id for point in spec.points()}
        if unknown:
            return f"seeds added at {sorted(unknown)[0]!r}, which is no design point"
    return None


def _unreadable(study_name: str, problem: str) -> UserError:
    return UserError(f"study {study_name!r} records a spec this code cannot read ({problem}): "
                     "it was not written by this tool, or was changed since; choose another "
                     "name=...")


def spec_from_trials(study: optuna.Study) -> StudySpec:
    """For a study without a (readable) spec: its factors, levels and seeds as its trials
    recorded them; the baseline is the `baseline` design point's, else each factor's most common
    value. The design is the study's `design` attribute where an older version wrote one."""
    trials = study.get_trials(deepcopy=False)
    design = study.user_attrs.get("design")
    design = design if design in DESIGNS else HydraJobs.name  # marginal means: no baseline
    at_baseline = next((t.params for t in trials
                        if t.user_attrs.get("design_point") == "baseline"), {})
    factors: dict[str, FactorSpec] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            if name not in factors:
                values = [t.params[name] for t in trials if name in t.params]
                kind = ("categorical" if isinstance(distribution, CategoricalDistribution) else
                        "float" if isinstance(distribution, FloatDistribution) else "int")
                levels = design_order(kind, list(dict.fromkeys(values)))
                base = at_baseline.get(name, Counter(values).most_common(1)[0][0])
                key = FACTORS[name].key if name in FACTORS else name
                factors[name] = FactorSpec(key=key, kind=kind,
                                           log=getattr(distribution, "log", False),
                                           baseline=base, levels=levels,
                                           varied=len(levels) > 1)
    seeds = sorted({t.user_attrs["seed"] for t in trials if "seed" in t.user_attrs})
    config = study.user_attrs.get("config", {})
    setup = {f"{group}.{key}": value for group in SETUP_GROUPS
             for key, value in config.get(group, {}).items()}
    return StudySpec(design=design, factors=factors, seeds=seeds,
                     setup=setup | {"budget": study.user_attrs.get("budget")},
                     version=0, recorded=False)
