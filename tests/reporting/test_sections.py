"""The report's sections (study.reporting.sections): the textbook's claim and the advice follow
the verdicts, and say nothing a study cannot tell."""

from study.reporting.sections import claim_table, recommendations
from study.stats.ranking import rank_trials
from study.stats.synthetic import OFAT, ofat_table


def test_claims_and_advice_follow_the_verdicts() -> None:
    # channels and activation matter (as the textbook says), lr matters too (it says less).
    trials = ofat_table({"channels": 0.04, "activation": -0.03, "lr": -0.05}, noise=0.003,
                        seeds=8)
    ranking = rank_trials(trials, OFAT).ranking
    claims = claim_table(ranking).set_index("factor")
    assert claims.loc["lr", "agreement"] == "disagrees"  # surely in the top three
    assert claims.loc["channels", "agreement"] == "agrees"
    assert claims.loc["preprocessing", "agreement"] == "disagrees"  # surely not
    assert claims.loc["pooling", "agreement"] == "agrees"
    advice = recommendations(ranking)
    assert advice[0].startswith("**lr**") and "-4.9 points (at 0.01)" in advice[0]
    assert any(a.startswith("Leave at the baseline (shown negligible)") and "pooling" in a
               for a in advice)


def test_one_seed_study_makes_no_claims() -> None:
    trials = ofat_table({"lr": 0.05}, noise=0.01, seeds=1)
    ranking = rank_trials(trials, OFAT).ranking
    assert claim_table(ranking)["agreement"].str.startswith("cannot tell yet").all()
    advice = recommendations(ranking)
    assert advice[0].startswith("No factor is shown to matter yet")
    assert all("noise cannot be measured" in a for a in advice[1:])
