"""The report's sections as data, from what study.stats computed: the ranking, level, claim and
epoch tables (DataFrames of shown values), the factors by verdict and by the textbook's claim,
and the setup's facts. The templates in templates/ say them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from study.design.spec import StudySpec
from study.reporting.compare import correlation_columns
from study.reporting.document import fmt, percent
from study.stats import stability
from study.stats.frames import finished, outcome_counts
from study.stats.ranking import CLAIMS, LIKELY, VERDICTS, Analysis, rank_text

CLAIMED_MOST = ("channels", "activation", "preprocessing")  # the textbook: these matter most,
CLAIMED_LESS = ("dropout", "pooling", "batch_size", "lr")  # these less; it ranks no others


def ranking_table(ranking: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The ranking's shown values; its effect intervals are simultaneous at 1 - alpha."""
    return pd.DataFrame({
        "rank (95% interval)": ranking.apply(rank_text, axis=1),
        "factor": ranking["factor"],
        "verdict": ranking["verdict"],
        f"effect [{percent(1 - alpha)} CI]": [
            f"{fmt(e)} [{fmt(lo)}, {fmt(hi)}]" for e, lo, hi in zip(
                ranking["effect"], ranking["effect_ci_low"], ranking["effect_ci_high"],
                strict=True)],
        "largest difference from baseline": [
            "n/a" if pd.isna(d) else f"{d:+.3f} ({level})" for d, level in zip(
                ranking["largest_difference"], ranking["largest_level"], strict=True)],
        "raw range": ranking["raw_range"].map(fmt),
        "ω²": ranking["omega_squared"].map(lambda v: fmt(v, ".2f")),
        "accuracy p (Holm)": ranking["accuracy_p_holm"].map(lambda v: fmt(v, ".2g")),
        "diverged or stalled": [
            f"{fmt(d, '.0f')}/{fmt(n, '.0f')}, p (Holm) {fmt(p, '.2g')}" for d, n, p in zip(
                ranking["diverged"], ranking["trials"], ranking["divergence_p_holm"], strict=True)],
        "why": ranking["reason"],
    })


def level_table(analysis: Analysis) -> pd.DataFrame:
    """Each level: mean accuracy (converged trials), its difference from the baseline with the
    simultaneous interval, and its divergence rate."""
    differences = analysis.differences.rename(columns={"ci_low": "diff_low",
                                                       "ci_high": "diff_high"})
    levels = analysis.levels.merge(differences, on=["factor", "level"], how="left")
    return pd.DataFrame({
        "factor": levels["factor"],
        "level": [f"{v} (baseline)" if b else str(v) for v, b in zip(
            levels["level"], levels["baseline"], strict=True)],
        "accuracy [95% CI] (converged)": [
            f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}] ({n})" for m, lo, hi, n in zip(
                levels["mean"], levels["ci_low"], levels["ci_high"], levels["n"], strict=True)],
        f"difference from baseline [simultaneous {percent(1 - analysis.model.alpha)} CI]": [
            "" if b else f"{fmt(d, '+.3f')} [{fmt(lo, '+.3f')}, {fmt(hi, '+.3f')}]"
            for d, lo, hi, b in zip(levels["difference"], levels["diff_low"],
                                    levels["diff_high"], levels["baseline"], strict=True)],
        "p (adjusted)": ["" if b else fmt(p, ".2g") for p, b in zip(
            levels["p"], levels["baseline"], strict=True)],
        "diverged or stalled [95% CI]": [
            f"{k}/{n} = {fmt(r, '.2f')} [{fmt(lo, '.2f')}, {fmt(hi, '.2f')}]"
            for k, n, r, lo, hi in zip(levels["diverged"], levels["trials"], levels["rate"],
                                       levels["rate_low"], levels["rate_high"], strict=True)],
        "Fisher p": levels["fisher_p"].map(lambda v: fmt(v, ".2g")),
    })


def claim_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """The textbook's claim per factor: agrees / disagrees only when the rank interval lies
    wholly inside or outside the top three and the verdict supports it."""
    top = len(CLAIMED_MOST)
    rows = []
    for _, r in ranking.iterrows():
        claimed_most, verdict = r["factor"] in CLAIMED_MOST, r["verdict"]
        row = {"factor": r["factor"], "textbook": "not named",
               "this study": f"rank {rank_text(r)}, {verdict}", "agreement": "n/a"}
        rows.append(row)
        if not claimed_most and r["factor"] not in CLAIMED_LESS:
            continue
        inside = pd.notna(r["rank_high"]) and r["rank_high"] <= top
        outside = pd.notna(r["rank_low"]) and r["rank_low"] > top
        decided = verdict in CLAIMS
        if inside and verdict == "influential":
            shown_most = True
        elif outside and decided:
            shown_most = False
        else:
            shown_most = None
        if shown_most is None:
            why = ("verdict " + verdict if not decided else
                   "no rank interval" if pd.isna(r["rank_low"]) else
                   f"rank interval {r['rank_low']}-{r['rank_high']} straddles the top {top}")
            agreement = f"cannot tell yet ({why})"
        else:
            agreement = "agrees" if shown_most == claimed_most else "disagrees"
        row |= {"textbook": "matters most" if claimed_most else "matters less",
                "agreement": agreement}
    return pd.DataFrame(rows)


def verdict_groups(ranking: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """The ranking's rows (as records, in rank order) by verdict, and the `likely` ones (any
    LIKELY verdict) together: what the answer and the advice say of each factor."""
    return ({v: ranking[ranking["verdict"] == v].to_dict("records") for v in VERDICTS}
            | {"likely": ranking[ranking["verdict"].isin(LIKELY.values())].to_dict("records")})


def claim_groups(claims: pd.DataFrame) -> dict[str, list[str]]:
    """The factors the textbook names, by how this study fares against its claim."""
    named = claims[claims["textbook"] != "not named"]
    fares = named["agreement"].str.replace(r" \(.*", "", regex=True)
    return {outcome: list(named.loc[fares == outcome, "factor"])
            for outcome in ("agrees", "disagrees", "cannot tell yet")}


def counted(values: pd.Series) -> list[tuple[str, int]]:
    """Each value with its number of trials (unrecorded ones counted as such)."""
    return [(str(v), int(n)) for v, n in values.fillna("unrecorded").value_counts().items()]


def shown_path(text: str) -> str:
    """`text` with every absolute path in it relative to the project (the working folder), or
    as its file name where it lies outside: a report does not show this machine's folders.
    Studies recorded by older versions stored the absolute path."""
    def shown(match: re.Match[str]) -> str:
        path = Path(match.group())
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else path.name

    return re.sub(r"(?<!\S)/\S+", shown, text)


@dataclass
class SetupFacts:
    """What the study is (its spec), how it grew, and where and with what its trials ran; every
    value from the study's database, which anyone sharing it can write (templates show it
    literally)."""

    design: str
    varied: list[str]
    seeds: list[int]
    baseline_seeds: list[int]  # [] when the baseline has the other points' seeds
    trials: int
    finished: int
    outcomes: dict[str, int]
    data_source: str
    settings: dict[str, Any]  # config key -> value, budget and data fingerprint included
    epochs: Any
    recorded: bool
    identity: str
    version: int
    created: dict[str, Any]
    history: list[dict[str, Any]]
    devices: list[tuple[str, int]]  # of the finished trials: one that never ran has no device
    bn_stats: list[tuple[str, int]]  # of the finished trials: exact | running | none
    bn_images: int | None  # training images the exact statistics are computed over
    code: list[tuple[str, int]]
    added_seeds: int  # seeds the looks added (sweep.until=decided), at added_points points
    added_points: int
    span_s: float | None  # from the first finished trial's start to the last one's end
    trial_time_s: float | None  # the finished trials' own wall times, summed


def setup_facts(spec: StudySpec, trials: pd.DataFrame) -> SetupFacts:
    ran = finished(trials)
    return SetupFacts(
        design=spec.design, varied=spec.varied, seeds=spec.seeds,
        baseline_seeds=spec.baseline_seeds if spec.baseline_seeds != spec.seeds else [],
        trials=len(trials), finished=len(ran), outcomes=outcome_counts(trials),
        data_source=shown_path(str(spec.created.get("data_source", "?"))), settings=spec.setup,
        epochs=spec.setting("train.epochs"), recorded=spec.recorded,
        identity=spec.identity_hash() if spec.recorded else "", version=spec.version,
        created=spec.created, history=spec.history, devices=counted(ran["device"]),
        bn_stats=counted(ran["bn_stats"]), bn_images=bn_images_used(spec),
        code=counted(ran["code"]),
        added_seeds=sum(len(seeds) for seeds in spec.added_seeds.values()),
        added_points=len(spec.added_seeds), span_s=time_span(ran),
        trial_time_s=ran["wall_time_s"].sum(min_count=1))  # NaN when none finished


def bn_images_used(spec: StudySpec) -> int | None:
    """The training images BatchNorm's exact statistics were computed over: train.bn_images, or
    the training set where it is smaller; None where the spec does not say."""
    wanted = spec.setting("train.bn_images")
    subset = spec.setting("data.train_subset") or (spec.setting("data.synthetic_train")
                                                   if spec.setting("data.source") == "synthetic"
                                                   else None)
    return None if wanted is None else min(wanted, subset or wanted)


def gap_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """The generalisation-gap check's shown values (study.stats.gaps), flagged levels marked."""
    return pd.DataFrame({
        "factor": gaps["factor"],
        "level": [f"{v} (baseline)" if b else str(v) for v, b in zip(
            gaps["level"], gaps["baseline"], strict=True)],
        "trials": gaps["n"],
        "training-sample accuracy": gaps["sample_accuracy"].map(fmt),
        "test accuracy": gaps["test_accuracy"].map(fmt),
        "gap": gaps["gap"].map(lambda v: fmt(v, "+.3f")),
        "beyond the baseline's": ["" if b else fmt(e, "+.3f") for e, b in zip(
            gaps["excess"], gaps["baseline"], strict=True)],
        "flagged": gaps["flagged"].map({True: "flagged", False: ""}),
    })


def time_span(trials: pd.DataFrame) -> float | None:
    """Seconds from the first trial's start to the last one's end (a study resumed later
    counts the pause too); None without a start and an end."""
    started, ended = pd.to_datetime(trials["started"]), pd.to_datetime(trials["ended"])
    if started.isna().all() or ended.isna().all():
        return None
    return (ended.max() - started.min()).total_seconds()


def epoch_table(over_epochs: stability.EpochRanking) -> pd.DataFrame:
    corr = over_epochs.correlations
    return pd.DataFrame({"epoch": corr["epoch"], **correlation_columns(corr)})


def look_table(spec: StudySpec) -> pd.DataFrame | None:
    """Each look of a study that adds seeds until its factors are decided (sweep.until=decided):
    what it saw, what it added where and why it stopped; None for a study without looks."""
    if not spec.looks:
        return None
    rows = [{
        "look": f"{entry['look']} of {spec.looks}", "finished trials": entry["trials"],
        "tested at": percent(entry["alpha"]),
        "undecided": ", ".join(entry["undecided"]) or "none",
        "added": ", ".join(f"{point} +{count}" for point, count in entry["added"].items()),
        "why it stopped": entry["stop"] or "",
        "not added": "; ".join(f"{factor}: {why}" for factor, why in entry["skipped"].items()),
    } for entry in spec.look_log]
    return pd.DataFrame(rows, columns=["look", "finished trials", "tested at", "undecided",
                                       "added", "why it stopped", "not added"])
