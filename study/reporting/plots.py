"""The report's figures, in one seaborn style, each saved as PNG and SVG.

Every function draws from what study.stats computed (DataFrames and records) and returns the
stem of the files it wrote (`<stem>.png`, `<stem>.svg`).
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

from study.design.spec import StudySpec
from study.reporting.document import percent
from study.stats.fit import Noise
from study.stats.frames import ACCURACY, finished
from study.stats.ranking import VERDICTS, rank_text
from study.stats.slices import level_order, level_slice
from study.stats.stability import STABLE_RHO, CrossStudy, EpochRanking

logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO lines are noise here
sns.set_theme(style="whitegrid", context="notebook")
# every text drawn is plain: level labels and factor names come from the study's database, and
# one such as `$\undefinedmacro{x$` read as mathtext (or TeX) would break the report
matplotlib.rcParams.update({"text.parse_math": False, "text.usetex": False})
# a likely verdict in the light tint of its claim's colour
VERDICT_COLOURS = dict(zip(VERDICTS, ("#1f77b4", "#17becf", "#2ca02c", "#aec7e8", "#9edae5",
                                      "#98df8a", "#a6a6a6", "#d9d9d9"), strict=True))


def labelled_slice(trials: pd.DataFrame, factor: str, spec: StudySpec
                   ) -> tuple[pd.DataFrame, list[str]]:
    """The factor's slice with its levels as text labels (for categorical plot axes), and the
    labels in design order."""
    part = level_slice(trials, factor, spec)
    order = [str(v) for v in level_order(spec, factor, list(part["level"].unique()))]
    return part.assign(level=part["level"].astype(str)), order


def _save(fig: plt.Figure, out: Path, stem: str) -> str:
    fig.tight_layout()
    for suffix in ("png", "svg"):
        fig.savefig(out / f"{stem}.{suffix}", dpi=120, bbox_inches="tight")  # outside legends
    plt.close(fig)
    return stem


def plot_influence(ranking: pd.DataFrame, noise: Noise, threshold: float, confidence: float,
                   out: Path) -> str:
    """Each ranked factor's effect with its simultaneous interval (at `confidence`), coloured
    by verdict, rank 1 on top, with the practical threshold and the seed noise marked."""
    ranked = ranking[ranking["effect"].notna()]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(ranked) + 2.8))
    y = np.arange(len(ranked))
    ax.barh(y, ranked["effect"], color=ranked["verdict"].map(VERDICT_COLOURS))
    # the interval as a segment from its ends, so it need not be centred on the estimate
    ax.hlines(y, ranked["effect_ci_low"], ranked["effect_ci_high"], color="black", lw=1.5,
              label=f"{percent(confidence)} interval")
    ax.set_yticks(y, [f"{row['factor']}  {rank_text(row)}" for _, row in ranked.iterrows()])
    ax.invert_yaxis()
    ax.axvline(threshold, color="black", linestyle="-.", lw=1,
               label=f"practical threshold ({threshold:g})")
    for key, style, where in (("baseline_std", "--", "at baseline"),
                              ("pooled_std", ":", "pooled")):
        std = getattr(noise, key)
        if pd.notna(std):
            ax.axvline(std, color="tab:red", linestyle=style, label=f"seed std {where} ({std:.3f})")
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
    or stalled trials as red crosses at the bottom, the baseline marked."""
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
                   clip_on=False, label="diverged or stalled")
    base = str(spec.factors[factor].baseline)
    if spec.plan.on_slices and base in order:
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
    part = part[np.isfinite(part["train_accuracy"].astype(float))]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.set(ylabel="training accuracy", title=f"Learning curves by {factor}")
    if part.empty:  # every epoch of every trial diverged: say so where the curves would be
        ax.text(0.5, 0.5, "no finite training accuracy to draw", ha="center", va="center",
                transform=ax.transAxes)
        return _save(fig, out, f"curves_{factor}")
    sns.lineplot(data=part, x="epoch", y="train_accuracy", hue="level", hue_order=order,
                 errorbar=("ci", 95), seed=0, marker="o", ax=ax)  # the same bootstrap each time
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


def plot_overview(trials: pd.DataFrame, levels: pd.DataFrame, noise: Noise,
                  factors: list[str], spec: StudySpec, out: Path) -> str:
    """The textbook's comparison at a glance: one panel per factor on a shared accuracy axis,
    levels in design order, every converged seed a dot, the level means with 95% intervals, the
    baseline level marked, the band of the baseline mean +- 2 seed std across all panels, and
    diverged or stalled trials as crosses on the bottom edge."""
    done = finished(trials)
    columns = min(4, len(factors))
    rows = -(-len(factors) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 2.9 * rows + 0.6),
                             sharey=True, squeeze=False)
    ok_all = done[done["outcome"] == "complete"]
    band = noise.band()
    shown = levels[levels["factor"].isin(factors)]  # seeds, intervals and band all in view
    low = pd.Series([ok_all[ACCURACY].min(), shown["ci_low"].min(),
                     band[0] if band else np.nan], dtype=float).min()
    high = pd.Series([ok_all[ACCURACY].max(), shown["ci_high"].max(),
                      band[1] if band else np.nan], dtype=float).max()
    if np.isnan(low):  # no trial converged: the diverged trials' crosses on the full scale
        low, high = 0.0, 1.0
    pad = 0.08 * (high - low or 0.05)
    for ax, factor in zip(axes.flat, factors, strict=False):
        part, order = labelled_slice(done, factor, spec)
        ci = levels[levels["factor"] == factor].assign(
            level=lambda d: d["level"].astype(str)).set_index("level").reindex(order)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(part))  # the same each time
        x = part["level"].map(order.index).to_numpy() + jitter
        ok = (part["outcome"] == "complete").to_numpy()
        if band:
            ax.axhspan(*band, color="tab:red", alpha=0.1, lw=0)
        base = str(spec.factors[factor].baseline)
        if spec.plan.on_slices and base in order:
            ax.axvspan(order.index(base) - 0.4, order.index(base) + 0.4, color="tab:green",
                       alpha=0.15, lw=0)
        ax.errorbar(range(len(order)), ci["mean"], yerr=[ci["mean"] - ci["ci_low"],
                    ci["ci_high"] - ci["mean"]], fmt="D", ms=5, color="tab:blue", capsize=3,
                    zorder=3)
        ax.scatter(x[ok], part.loc[ok, ACCURACY], color="0.25", edgecolors="white",
                   linewidths=0.5, alpha=0.8, s=14, zorder=4)  # over the means: one seed shows
        ax.scatter(x[~ok], np.full((~ok).sum(), low - pad), marker="x", color="tab:red", s=28,
                   clip_on=False, zorder=5)
        ax.set_xticks(range(len(order)), order, rotation=30 if len(order) > 3 else 0,
                      fontsize="small", ha="right" if len(order) > 3 else "center")
        ax.set_title(factor, fontsize="medium")
        ax.set_xlim(-0.6, len(order) - 0.4)
    for ax in axes.flat[len(factors):]:
        ax.set_visible(False)
    axes[0, 0].set_ylim(low - pad, high + pad)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy")
    handles = [plt.Line2D([], [], marker="o", ls="", color="0.35", label="one seed"),
               plt.Line2D([], [], marker="D", color="tab:blue", label="mean, 95% CI"),
               plt.Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.15, label="baseline")]
    if (done["outcome"] != "complete").any():
        handles.append(plt.Line2D([], [], marker="x", ls="", color="tab:red",
                                  label="diverged or stalled"))
    if band:
        handles.insert(2, plt.Rectangle((0, 0), 1, 1, color="tab:red", alpha=0.1,
                                        label="baseline mean ± 2 seed std "
                                              f"({noise.baseline_std:.3f})"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small",
               frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Test accuracy by factor: every level on one scale"
                 + ("" if band else " (noise band n/a: the baseline has no two converged seeds)"))
    return _save(fig, out, "overview")


def plot_epoch_ranking(ranking: EpochRanking, out: Path) -> str:
    """Left: each factor's effect after every epoch; right: the rank correlation of each epoch's
    ranking with the final one, with 95% bootstrap intervals."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    last = ranking.effects[ranking.effects["epoch"] == ranking.epochs]
    order = list(last.sort_values("corrected", ascending=False)["factor"])
    sns.lineplot(data=ranking.effects, x="epoch", y="effect", hue="factor", hue_order=order,
                 marker="o", ax=left)
    left.set(ylabel="effect on test accuracy", title="Factor effects after each epoch")
    left.legend(fontsize="small", title="factor (final rank order)", ncol=4, frameon=False,
                loc="upper center", bbox_to_anchor=(0.5, -0.18))
    corr = ranking.correlations
    for name, colour in (("spearman", "tab:blue"), ("kendall", "tab:orange")):
        right.plot(corr["epoch"], corr[name], marker="o", color=colour,
                   label=f"{name.capitalize()} with the final ranking")
        right.fill_between(corr["epoch"], corr[f"{name}_low"], corr[f"{name}_high"],
                           color=colour, alpha=0.15)
    right.axhline(STABLE_RHO, color="black", ls=":", lw=1, label=f"stable: rho ≥ {STABLE_RHO}")
    if ranking.stable_from is not None:
        right.axvline(ranking.stable_from, color="tab:green", ls="--", lw=1,
                      label=f"stable from epoch {ranking.stable_from}")
    right.set(xlabel="epoch", ylabel="rank correlation", ylim=(-1.05, 1.05),
              title="Agreement with the final ranking (95% bootstrap intervals)")
    right.legend(fontsize="small", ncol=2, frameon=False, loc="upper center",
                 bbox_to_anchor=(0.5, -0.18))
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, out, "ranking_over_epochs")


def plot_cross_study(cross: CrossStudy, out: Path) -> str:
    """Each factor's effect with its 95% interval in every study, in the reference's rank
    order."""
    effects = cross.effects.dropna(subset=["effect"])
    reference = effects[effects["study"] == cross.reference].sort_values("effect",
                                                                          ascending=False)
    order = list(reference["factor"]) + sorted(set(effects["factor"]) - set(reference["factor"]))
    studies = list(dict.fromkeys(effects["study"]))
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(order) * max(1, len(studies) / 2) + 1.8))
    offsets = np.linspace(-0.25, 0.25, len(studies)) if len(studies) > 1 else [0.0]
    for offset, name, colour in zip(offsets, studies, sns.color_palette(n_colors=len(studies)),
                                    strict=True):
        part = effects[effects["study"] == name].set_index("factor").reindex(order)
        y = np.arange(len(order)) + offset
        ax.errorbar(part["effect"], y, xerr=[part["effect"] - part["effect_ci_low"],
                                             part["effect_ci_high"] - part["effect"]],
                    fmt="o", color=colour, capsize=3,
                    label=f"{name} (budget {cross.budgets[name][0]})")
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set(xlabel="effect on test accuracy (95% interval)",
           title=f"Factor effects by study (order: {cross.reference})")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=min(3, len(studies)), frameon=False)
    return _save(fig, out, "effects_by_study")
