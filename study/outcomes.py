"""How a trial ended, spelled once: the recording (study.training.engine, study.runs.queue) writes
these words and every filter (study.stats.frames, the report) reads them through `outcome_of`,
so that a trial the report lists is a trial the study recorded that way.

- complete: it converged; its accuracy is compared;
- diverged: its loss became NaN/inf, a result of its settings (its level's divergence rate);
- stalled: it learned nothing (its accuracy on training images stayed within noise of chance,
  study.training.evaluation), a result of its settings counted with the diverged ones;
- failed: an exception, or its worker was killed or lost (no heartbeat): no result;
- interrupted: Ctrl-C, SIGTERM, SIGHUP or the run's death stopped it: no result; a rerun trains
  it again.
"""

from __future__ import annotations

COMPLETE = "complete"
DIVERGED = "diverged"
STALLED = "stalled"
NOT_LEARNED = (DIVERGED, STALLED)  # results without an accuracy to compare: a level's rate
FAILED = "failed"
INTERRUPTED = "interrupted"
NO_RESULT = (FAILED, INTERRUPTED)  # outcomes of trials Optuna records as FAIL
LISTED = (*NOT_LEARNED, FAILED, INTERRUPTED)  # the report lists each such trial with its reason
# Every failure this tool records has a reason; a failed trial without one was failed by Optuna
# for its missing heartbeat: the worker training it was killed or lost.
NO_HEARTBEAT = "no heartbeat: the worker training it was killed or lost"


def outcome_of(state: str, recorded: str | None, reason: str | None) -> str:
    """The outcome of a trial in Optuna state `state` (COMPLETE, FAIL, RUNNING, WAITING, ...)
    with the outcome and reason its user attributes record (None where they record none)."""
    if state == "COMPLETE":
        return recorded if recorded in (COMPLETE, *NOT_LEARNED) else COMPLETE
    if state == "FAIL":
        # older versions recorded an interruption as failed with the reason "interrupted"
        return INTERRUPTED if INTERRUPTED in (recorded, reason) else FAILED
    return state.lower()
