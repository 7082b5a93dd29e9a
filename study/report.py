"""Write a study's report to `reports/<name>/`: report.md, trials.csv and seaborn plots (PNG).

Works on any study in any storage, including one still running or interrupted: it uses the
finished trials and says how many. Written automatically at the end of a sweep, or:

    python -m study.report name=ofat-quick storage=sqlite:///results/optuna.db
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import optuna
import pandas as pd
import seaborn as sns
from omegaconf import DictConfig, OmegaConf

from study.analysis import (
    ACCURACY,
    factor_ranking,
    factor_slice,
    finished,
    level_labels,
    outcome_counts,
    seed_noise,
    trials_frame,
)
from study.config import UserError
from study.design import baseline

log = logging.getLogger("study.report")
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO lines are noise here
sns.set_theme(style="whitegrid", context="notebook")


def study_baseline(study: optuna.Study) -> dict[str, Any] | None:
    """The OFAT baseline the study was run with; None for designs analysed by marginal means."""
    if study.user_attrs.get("design") != "ofat":
        return None
    return baseline(OmegaConf.create(study.user_attrs["config"]))


def plot_influence(ranking: pd.DataFrame, noise_std: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(ranking) + 1.5))
    sns.barplot(data=ranking, x="effect", y="factor", color="tab:blue", ax=ax)
    if noise_std == noise_std:  # not NaN
        ax.axvline(noise_std, color="tab:red", linestyle="--",
                   label=f"seed-to-seed std at baseline ({noise_std:.3f})")
        ax.legend(loc="lower right")
    ax.set(xlabel="effect on test accuracy (best minus worst level mean)", ylabel="",
           title="Factor influence")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_factor(trials: pd.DataFrame, factor: str, base: dict[str, Any] | None,
                path: Path) -> None:
    done = factor_slice(finished(trials), factor, base)
    done = done.assign(level=level_labels(done[factor]))
    order = [str(v) for v in sorted(done["level"].unique())]  # a factor's levels share a type
    done["level"] = done["level"].astype(str)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.stripplot(data=done, x="level", y=ACCURACY, order=order, color="0.4", alpha=0.6, ax=ax)
    sns.pointplot(data=done, x="level", y=ACCURACY, order=order, color="tab:blue",
                  linestyle="none", errorbar=None, marker="D", ax=ax)
    if base is not None and str(base[factor]) in order:
        ax.axvline(order.index(str(base[factor])), color="tab:green", alpha=0.3, linewidth=8,
                   label="baseline")
        ax.legend(loc="best")
    ax.set(xlabel=factor, ylabel="test accuracy", title=f"Test accuracy by {factor}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def fmt(value: float, spec: str = ".3f") -> str:
    return "n/a" if pd.isna(value) else format(value, spec)


def ranking_table(ranking: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "rank": ranking["rank"],
        "factor": ranking["factor"],
        "mean test accuracy by level": [
            ", ".join(f"{lv}: {m:.3f}" for lv, m in means.items())
            for means in ranking["mean_by_level"]],
        "effect (best - worst)": ranking["effect"].map(fmt),
        "seed std at baseline": ranking["baseline_seed_std"].map(fmt),
        "effect / seed std": ranking["effect_over_noise"].map(lambda v: fmt(v, ".1f")),
        "trials": ranking["trials"],
    })


def write_report(study: optuna.Study, reports_root: Path) -> Path:
    """Write report.md, trials.csv and the plots; return the report's folder."""
    out = reports_root / study.study_name
    out.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(study)
    trials.to_csv(out / "trials.csv", index=False)
    base = study_baseline(study)
    ranking = factor_ranking(trials, base)
    noise = seed_noise(trials)
    if not ranking.empty:
        plot_influence(ranking, noise["baseline_std"], out / "influence.png")
        for factor in ranking["factor"]:
            plot_factor(trials, factor, base, out / f"factor_{factor}.png")
    (out / "report.md").write_text(render_markdown(study, trials, ranking, noise))
    return out


def render_markdown(study: optuna.Study, trials: pd.DataFrame, ranking: pd.DataFrame,
                    noise: dict[str, float]) -> str:
    attrs = study.user_attrs
    cfg = attrs.get("config", {})
    env = attrs.get("environment", {})
    budget = attrs.get("budget", "?")
    counts = outcome_counts(trials)
    used = len(finished(trials))
    lines = [f"# Sensitivity study `{study.study_name}`", ""]
    if budget != "full":
        lines += [f"> **Budget `{budget}`**: a reduced study (training subset, fewer epochs, "
                  "fewer seeds), a preview, not the full result. With so few optimizer steps, "
                  "large batches and small learning rates are penalised far more than in the full "
                  "study. Run with `budget=full` for the real answer.", ""]
    train = cfg.get("train", {})
    data = cfg.get("data", {})
    lines += [
        "## Setup", "",
        f"- Design: `{attrs.get('design', '?')}`; seeds per design point: "
        f"{cfg.get('sweep', {}).get('seeds', '?')}",
        f"- Trials: {len(trials)} in the study, {used} finished and used here "
        f"({', '.join(f'{k}: {v}' for k, v in counts.items())})",
        f"- Data: {attrs.get('data_source', '?')}; preprocessing statistics fitted on the "
        "training split",
        f"- Training: {train.get('epochs', '?')} epochs, {train.get('optimizer', '?')} "
        f"(momentum {train.get('momentum', '?')}), {train.get('schedule', '?')} schedule, "
        f"weight decay {train.get('weight_decay', '?')}, augmentation "
        f"{'on' if train.get('augment') else 'off'}; test subset: {data.get('test_subset')}",
        f"- Device: {env.get('device', '?')}; torch {env.get('torch', '?')}, optuna "
        f"{env.get('optuna', '?')}, python {env.get('python', '?')}; code {git_commit()}",
        "",
        "## Ranking", "",
        f"Seed-to-seed std of test accuracy at the baseline: {fmt(noise['baseline_std'], '.4f')}"
        f" (seeds: {noise['baseline_seeds']}); pooled over all design points: "
        f"{fmt(noise['pooled_std'], '.4f')}. A diverged trial counts as chance accuracy (0.1).",
        *(["With one seed per design point the seed-to-seed noise cannot be measured, so no "
           "difference here can be told apart from it; run with sweep.seeds=2 or more."]
          if pd.isna(noise["pooled_std"]) else []),
        "",
    ]
    if ranking.empty:
        lines += ["No finished trials yet.", ""]
    else:
        lines += [markdown_table(ranking_table(ranking)), "", "![influence](influence.png)", "",
                  "## Accuracy by level", ""]
        lines += [f"![{f}](factor_{f}.png)" for f in ranking["factor"]]
        lines += [""]
    unusable = trials[trials["outcome"].isin(["diverged", "failed"])]
    lines += ["## Diverged and failed trials", ""]
    if unusable.empty:
        lines += ["None.", ""]
    else:
        lines += [markdown_table(unusable[["number", "outcome", "design_point", "seed", "reason"]]
                                 .fillna("")), ""]
    lines += ["All trials: [trials.csv](trials.csv).", ""]
    return "\n".join(lines)


def run_report(cfg: DictConfig) -> None:
    from study.sweep import mask_url, open_storage

    storage = open_storage(cfg.storage)
    names = [s.study_name for s in storage.get_all_studies()]
    if cfg.name not in names:
        raise UserError(f"no study named {cfg.name!r} in {mask_url(cfg.storage)}; studies there: "
                        f"{', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    out = write_report(study, Path("reports"))
    log.info("report of %d trials written to %s", len(study.trials), out / "report.md")


def main() -> None:
    from study.cli import run_app

    run_app(run_report, "report")


if __name__ == "__main__":
    main()
