"""The errors a user can fix, and the signals that stop a run. The apps (study.cli) print each
as one line: a UserError exits with 2, an interruption with 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class UserError(Exception):
    """Something the user can fix (config, data, storage, study name); printed as one line."""


class StudyStopped(UserError):
    """A sweep ran and then stopped (too many failures); unlike other user errors, what it wrote
    stays."""


class WriteFailed(StudyStopped):
    """An output could not be written (disk full, a file-size limit): the one it would have
    replaced is kept, and so is what the run wrote before."""


class ConfigError(UserError):
    """A config value is invalid; the message is one line naming the key and what is allowed."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """SIGINT (Ctrl-C), SIGTERM (what SLURM sends before it kills a job, and a worker's parent
    at its death) or SIGHUP (a closed terminal or SSH session) arrived. Not an
    Exception, like KeyboardInterrupt, so that no `except Exception` takes it for a failed
    trial; `status` says what the run recorded, for the one line the app prints."""

    def __init__(self, signum: int, status: str = "") -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.status = signum, status

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM, 129
        # for SIGHUP


def one_line(text: object, limit: int = 400) -> str:
    """`text` on one line (an exception's message may hold several), cut to `limit`
    characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


_received: list[int] = []  # the stop signals this process got, first first
_deferring: list[bool] = []  # non-empty inside signals_deferred: the handler only records


def raise_on_signals() -> None:
    """Turn the first SIGINT, SIGTERM or SIGHUP of this process into `Interrupted`; later ones
    are ignored, so that recording the interrupted trials is not itself interrupted (a worker
    gets Ctrl-C from the terminal and SIGTERM from its parent). The signal is also remembered
    (`check_stop`): an exception raised in a finalizer or a library's catch-all is swallowed,
    and a loop that checks at each step still stops."""

    def interrupt(signum: int, _frame: object) -> None:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        request_stop(signum)
        if not _deferring:
            raise Interrupted(signum)

    for each in STOP_SIGNALS:
        signal.signal(each, interrupt)


def request_stop(signum: int) -> None:
    """Remember a stop (a signal, or a watcher that saw the run's process die)."""
    _received.append(signum)


def check_stop() -> None:
    """Raise `Interrupted` if a stop was requested: at a step where stopping is safe."""
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a stop until the block is done, so that what it writes to the storage (claiming a
    trial and registering it as this worker's) happens whole or not at all; a stop that came
    meanwhile is raised at its end. (Blocking the signal would not do: another thread of the
    process, e.g. the heartbeat's, takes it and Python runs the handler at once.)"""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    check_stop()
