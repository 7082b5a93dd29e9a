"""Run many `python -m study.<app> ...` commands as forks of one process that imported the
study once: each command is still a process of its own (its folder, its exit status, its own
stdout and stderr, nothing shared with the test), without the seconds a fresh interpreter spends
importing torch, optuna and Hydra (about 4 s each on the 2-core CPU, most of a refused command's
time).

The forking process imports what `python -m study.<app>` imports (the app module itself is left
out of sys.modules, so that it runs as `__main__` alone), and what torch imports at its first
meta-device kernels, which every sweep's memory check runs (torch._dynamo and sympy: about 3 s
of each command on the 2-core CPU); anything it prints while doing so (a warning at import, which
its forks would then not print again) fails `run_forked`, so a command's stderr is still checked
as a fresh process would write it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SERVER = r"""
import json, os, runpy, signal, sys, traceback
import study.report, study.sweep, study.train
from omegaconf import OmegaConf
from study.cli import CONF_DIR
from study.training.memory import training_bytes

training_bytes(OmegaConf.load(CONF_DIR / "model" / "cnn.yaml"), 1)  # torch's lazy imports

for app in ("report", "sweep", "train"):  # run as __main__, as `python -m` does: not imported
    del sys.modules[f"study.{app}"]
    delattr(sys.modules["study"], app)

def child(app, arguments, cwd, out, err, limit_s):
    signal.alarm(limit_s)  # a hanging command is killed by SIGALRM, not waited for
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.argv = ["-m", *arguments]
    code = 0
    try:
        runpy.run_module(f"study.{app}", run_name="__main__", alter_sys=True)
    except SystemExit as stop:  # as the interpreter turns it into an exit status
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

commands, at_once = json.loads(sys.stdin.read())
codes, running = [None] * len(commands), {}
for index, command in enumerate(commands):
    while len(running) >= at_once:
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(*command)
    running[pid] = index
while running:
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps(codes))
"""


def run_forked(commands: list[tuple[str, list[str], Path]], logs: Path, env: dict[str, str],
               at_once: int = 2, limit_s: int = 120) -> list[subprocess.CompletedProcess]:
    """Each (app, arguments, folder) run as `python -m study.<app> arguments` in folder,
    `at_once` at a time, each killed after `limit_s` seconds; their stdout and stderr are kept
    in `logs`. AssertionError when importing the study printed anything."""
    logs.mkdir(parents=True, exist_ok=True)
    jobs = [(app, arguments, str(folder), str(logs / f"{i}.out"), str(logs / f"{i}.err"),
             limit_s) for i, (app, arguments, folder) in enumerate(commands)]
    server = subprocess.run([sys.executable, "-c", SERVER], input=json.dumps([jobs, at_once]),
                            capture_output=True, text=True, env=env, cwd=Path.cwd(),
                            timeout=60 + limit_s * len(commands) / at_once)
    assert server.returncode == 0 and not server.stderr, server.stderr[-3000:]
    codes = json.loads(server.stdout.splitlines()[-1])
    return [subprocess.CompletedProcess(["python", "-m", f"study.{app}", *arguments], code,
                                        Path(out).read_text(), Path(err).read_text())
            for (app, arguments, *_), code, (_, _, _, out, err, _) in zip(commands, codes, jobs,
                                                                         strict=True)]
