"""Live progress of a sweep, read from the study storage, so it counts every worker process.

`snapshot` returns plain data (trials done/total, running, failed, best so far, each running
trial's epochs); `format_line` and `eta_seconds` turn it into words. `SweepProgress` polls the
storage in a thread while the workers train: on a terminal it draws rich progress bars (the
trials, and one bar of epochs per running trial, with log lines shown above them through rich's
own log handler); otherwise (CI, a log file) it logs one plain
line whenever a trial finishes, at most every LOG_EVERY_S seconds, and a last one at the end.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState
from rich.console import Group
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("study.runs.progress")
POLL_S = 2.0  # seconds between reads of the storage
LOG_EVERY_S = 10.0  # at most one plain progress line per this many seconds


@dataclass
class Snapshot:
    total: int  # trials in the design (or sweep.n_trials)
    complete: int
    failed: int
    running: int
    best: float | None  # highest test accuracy so far
    epochs: list[tuple[str, int]] = field(default_factory=list)  # running: (label, epochs done)


def snapshot(study: optuna.Study, total: int) -> Snapshot:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    return Snapshot(
        total=total, complete=len(done),
        failed=sum(t.state == TrialState.FAIL for t in trials), running=len(running),
        best=max((t.value for t in done), default=None),
        epochs=[(f"trial {t.number} [{t.user_attrs.get('design_point')}, seed "
                 f"{t.user_attrs.get('seed')}]", t.user_attrs.get("epochs_done", 0))
                for t in running])


def eta_seconds(finished_this_run: int, elapsed_s: float, remaining: int) -> float | None:
    """Remaining trials at this run's pace so far; None before the first one finishes."""
    if finished_this_run <= 0 or elapsed_s <= 0:
        return None
    return remaining * elapsed_s / finished_this_run


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_line(state: Snapshot, eta_s: float | None) -> str:
    best = "n/a" if state.best is None else f"{state.best:.4f}"
    return (f"progress: {state.complete}/{state.total} trials done ({state.failed} failed), "
            f"{state.running} running, best test accuracy {best}, ETA {duration(eta_s)}")


class SweepProgress:
    """`with SweepProgress(study, total, epochs):` around the training shows its progress."""

    def __init__(self, study: optuna.Study, total: int, epochs: int,
                 interactive: bool | None = None) -> None:
        self.study, self.total, self.epochs = study, total, epochs
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="progress", daemon=True)

    def __enter__(self) -> SweepProgress:
        self.start = time.monotonic()
        self.at_start = snapshot(self.study, self.total)
        self.last_logged = (-1, 0.0)
        if self.interactive:
            self.trials_bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                       MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                       TimeElapsedColumn())
            self.trials_task = self.trials_bar.add_task("trials", total=self.total, info="")
            self.epoch_bars = Progress(TextColumn("  {task.description}"), BarColumn(),
                                       MofNCompleteColumn(), TextColumn("epochs"))
            self.live = Live(Group(self.trials_bar, self.epoch_bars), refresh_per_second=2)
            self.live.__enter__()
            self._log_through_live(True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join()
        final = self._update(force_log=True)
        if self.interactive:
            self._log_through_live(False)
            self.live.__exit__(None, None, None)
            log.info("%s", format_line(final, 0.0))

    def _poll(self) -> None:
        while not self.stop.wait(POLL_S):
            try:
                self._update()
            except Exception as error:  # progress must never stop the training
                log.debug("progress read failed: %s", error)

    def _update(self, force_log: bool = False) -> Snapshot:
        state = snapshot(self.study, self.total)
        elapsed = time.monotonic() - self.start
        finished = (state.complete + state.failed
                    - self.at_start.complete - self.at_start.failed)
        remaining = max(0, self.total - state.complete - (state.failed - self.at_start.failed))
        eta = eta_seconds(finished, elapsed, remaining)
        if self.interactive:
            self._draw(state, eta)
        elif state.complete + state.failed != self.last_logged[0] and (
                force_log or elapsed - self.last_logged[1] >= LOG_EVERY_S):
            log.info("%s", format_line(state, eta))
            self.last_logged = (state.complete + state.failed, elapsed)
        return state

    def _draw(self, state: Snapshot, eta: float | None) -> None:
        best = "n/a" if state.best is None else f"{state.best:.4f}"
        self.trials_bar.update(self.trials_task, completed=state.complete, info=(
            f"{state.running} running, {state.failed} failed, best {best}, "
            f"ETA {duration(eta)}"))
        for task in list(self.epoch_bars.task_ids):
            self.epoch_bars.remove_task(task)
        for label, done in state.epochs:
            self.epoch_bars.add_task(label, total=self.epochs, completed=done)

    def _log_through_live(self, on: bool) -> None:
        """While the bars show, the console's log lines go through a RichHandler on the live
        display's console (above the bars) instead of the plain console handlers."""
        root = logging.getLogger()
        if on:
            self.console_handlers = [h for h in root.handlers
                                     if type(h) is logging.StreamHandler]
            for handler in self.console_handlers:
                root.removeHandler(handler)
            self.rich_handler = RichHandler(console=self.live.console, show_path=False)
            root.addHandler(self.rich_handler)
        else:
            root.removeHandler(self.rich_handler)
            for handler in self.console_handlers:
                root.addHandler(handler)
