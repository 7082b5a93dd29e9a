"""kill -9 of a sweep's own process at random moments, again and again: does every worker stop
with it, and does none claim a trial after its death? (docs/reliability.md quotes the output.)

    python scripts/kill_parent.py --runs 20

Each run starts `python -m study.sweep` with two worker processes (the smoke budget on the
synthetic set, 100 epochs per trial so that trials are running when the kill comes) in a fresh
folder and its own session, kills the run's process with SIGKILL after a random 1-20 s (while
workers start, claim or train), and then watches the session: a process of it still alive 15 s
later, or a trial started after the kill, is a failure.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna

COMMAND = [sys.executable, "-m", "study.sweep", "budget=smoke", "data=synthetic",
           "model.channels=8", "train.epochs=100", "sweep.workers=2", "name=killed",
           "sweep.levels.lr=[0.05,0.1]", "sweep.levels.activation=[relu,tanh]"]
DEADLINE_S = 15


def session_alive(session: int) -> list[int]:
    """The live (not zombie) processes of a session."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def one_run(folder: Path, delay_s: float) -> tuple[float | None, int]:
    """Seconds until the session was empty (None: not within DEADLINE_S), trials started after
    the kill."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(COMMAND, cwd=folder, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    time.sleep(delay_s)
    killed_at = datetime.now()
    process.kill()
    process.wait()
    start = time.monotonic()
    while session_alive(process.pid) and time.monotonic() - start < DEADLINE_S:
        time.sleep(0.1)
    left = session_alive(process.pid)
    empty_after = None if left else time.monotonic() - start
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    database = folder / "results" / "optuna.db"
    late = 0
    if database.exists():
        try:
            trials = optuna.load_study(study_name="killed",
                                       storage=f"sqlite:///{database}").trials
            late = sum(t.datetime_start is not None and t.datetime_start > killed_at
                       for t in trials)
        except KeyError:  # killed before the study was created
            pass
    return empty_after, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures = 0
    print("| run | kill after (s) | session empty after (s) | trials started after the kill |")
    print("|---|---|---|---|")
    for run in range(1, args.runs + 1):
        delay = round(rng.uniform(1, 20), 1)
        with tempfile.TemporaryDirectory() as folder:
            empty_after, late = one_run(Path(folder), delay)
        failures += empty_after is None or late > 0
        shown = "not within 15" if empty_after is None else f"{empty_after:.1f}"
        print(f"| {run} | {delay} | {shown} | {late} |", flush=True)
    print(f"\n{args.runs - failures} of {args.runs} runs: every process gone within "
          f"{DEADLINE_S} s and no trial started after the kill")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
