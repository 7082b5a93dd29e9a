"""The report's figures, in one seaborn style, each saved as PNG and SVG.

Every function draws from DataFrames made by study.analysis / study.stats and returns the stem
of the files it wrote (`<stem>.png`, `<stem>.svg`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from study.analysis import ACCURACY, finished, labelled_slice
from study.spec import StudySpec
from study.stats import VERDICTS, rank_text

logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO lines are noise here
sns.set_theme(style="whitegrid", context="notebook")
VERDICT_COLOURS = dict(zip(VERDICTS, ("#1f77b4", "#17becf", "#2ca02c", "#a6a6a6", "#d9d9d9"),
                           strict=True))


def _save(fig: plt.Figure, out: Path, stem: str) -> str:
    fig.tight_layout()
    for suffix in ("png", "svg"):
        fig.savefig(out / f"{stem}.{suffix}", dpi=120, bbox_inches="tight")  # outside legends
    plt.close(fig)
    return stem


def plot_influence(ranking: pd.DataFrame, noise: dict[str, float], threshold: float,
                   out: Path) -> str:
    """Each ranked factor's effect with its 95% interval, coloured by verdict, rank 1 on top,
    with the practical threshold and the seed noise marked."""
    ranked = ranking[ranking["effect"].notna()]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(ranked) + 2.8))
    y = np.arange(len(ranked))
    ax.barh(y, ranked["effect"], color=ranked["verdict"].map(VERDICT_COLOURS))
    # the interval as a segment from its ends, so it need not be centred on the estimate
    ax.hlines(y, ranked["effect_ci_low"], ranked["effect_ci_high"], color="black", lw=1.5,
              label="95% interval")
    ax.set_yticks(y, [f"{row['factor']}  {rank_text(row)}" for _, row in ranked.iterrows()])
    ax.invert_yaxis()
    ax.axvline(threshold, color="black", linestyle="-.", lw=1,
               label=f"practical threshold ({threshold:g})")
    for key, style, where in (("baseline_std", "--", "at baseline"),
                              ("pooled_std", ":", "pooled")):
        if pd.notna(noise[key]):
            ax.axvline(noise[key], color="tab:red", linestyle=style,
                       label=f"seed std {where} ({noise[key]:.3f})")
    for verdict, colour in VERDICT_COLOURS.items():
        if (ranked["verdict"] == verdict).any():
            ax.barh([0], [0], color=colour, label=verdict)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize="small",
              frameon=False)
    ax.set(xlabel="effect on test accuracy: largest difference from the baseline\n"
           "(selection-corrected)", ylabel="", title="Factor influence: rank (95% interval)")
    return _save(fig, out, "influence")


def plot_factor(trials: pd.DataFrame, levels: pd.DataFrame, factor: str, spec: StudySpec,
                out: Path) -> str:
    """Every converged trial's test accuracy by level, the level means with 95% CIs, diverged
    trials as red crosses at the bottom, the baseline marked."""
    part, order = labelled_slice(finished(trials), factor, spec)
    ci = levels[levels["factor"] == factor].assign(
        level=lambda d: d["level"].astype(str)).set_index("level").reindex(order)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    # seeded jitter: a rewritten report draws the same file, so the dashboard keeps one copy
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(part))
    x = part["level"].map(order.index) + jitter
    ok = (part["outcome"] == "complete").to_numpy()
    ax.scatter(x[ok], part.loc[ok, ACCURACY], color="0.45", alpha=0.7, s=18, label="one seed")
    ax.set_xticks(range(len(order)), order)
    ax.errorbar(range(len(order)), ci["mean"], yerr=[ci["mean"] - ci["ci_low"],
                ci["ci_high"] - ci["mean"]], fmt="D", color="tab:blue", capsize=5,
                label="mean, 95% CI")
    if (~ok).any():  # at the bottom of the axis, not at chance: the accuracies stay readable
        low = ax.get_ylim()[0]
        ax.scatter(x[~ok], np.full((~ok).sum(), low), marker="x", color="tab:red", s=30,
                   clip_on=False, label="diverged")
    base = str(spec.factors[factor].baseline)
    if spec.kind.on_slices and base in order:
        ax.axvspan(order.index(base) - 0.4, order.index(base) + 0.4, color="tab:green",
                   alpha=0.12, label="baseline")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize="small", loc="best")
    ax.set(xlabel=factor, ylabel="test accuracy", title=f"Test accuracy by {factor}")
    return _save(fig, out, f"factor_{factor}")


def plot_curves(curves: pd.DataFrame, factor: str, spec: StudySpec, out: Path) -> str:
    """Training accuracy per epoch for each level (mean over seeds, band: 95% CI)."""
    part, order = labelled_slice(curves, factor, spec)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.lineplot(data=part, x="epoch", y="train_accuracy", hue="level", hue_order=order,
                 errorbar=("ci", 95), seed=0, marker="o", ax=ax)  # the same bootstrap each time
    ax.set(ylabel="training accuracy", title=f"Learning curves by {factor}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title=factor, fontsize="small")
    return _save(fig, out, f"curves_{factor}")


def plot_interaction(table: pd.DataFrame, a: str, b: str, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(1.1 * len(table.columns) + 3, 0.6 * len(table) + 1.8))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", ax=ax,
                cbar_kws={"label": "mean test accuracy"})
    ax.set(xlabel=b, ylabel=a, title=f"{a} x {b}")
    return _save(fig, out, f"interaction_{a}_{b}")


def plot_time(trials: pd.DataFrame, out: Path) -> str:
    done = finished(trials)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sns.scatterplot(data=done, x="wall_time_s", y=ACCURACY, hue="outcome", ax=ax)
    ax.set(xlabel="wall time per trial (s)", ylabel="test accuracy",
           title="Accuracy vs training time")
    return _save(fig, out, "accuracy_vs_time")
