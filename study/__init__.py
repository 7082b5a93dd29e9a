"""Hyperparameter sensitivity studies of CNNs on CIFAR-10 (README.md).

The package is layered (training, design, runs, stats, reporting, api, then the commands
`python -m study.sweep | train | report | bench`); each layer imports only from those before it,
which tests/test_imports.py checks. What each holds and how to extend it: docs/extending.md.
"""

import os
import sys

if sys.argv[:1] == ["-m"]:  # a command (python -m study.<app>), importing its libraries

    def _out_of_memory_is_one_line(kind: type[BaseException], error: BaseException,
                                   trace: object) -> None:
        """A memory limit too tight for torch (ulimit -v) fails its import with a traceback;
        say so in the one line every user error gets, and exit with 2 like them."""
        text = str(error)
        if issubclass(kind, MemoryError) or "failed to map segment" in text or \
                "cannot allocate memory" in text.lower():
            print(f"error: cannot start: {kind.__name__}: {' '.join(text.split())[:300]}; the "
                  "process's memory limit (ulimit -v) is too low for torch: raise it",
                  file=sys.stderr, flush=True)
            os._exit(2)
        sys.__excepthook__(kind, error, trace)

    sys.excepthook = _out_of_memory_is_one_line
