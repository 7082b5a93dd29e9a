"""Hyperparameter sensitivity studies of CNNs on CIFAR-10 (README.md).

The package is layered; each layer imports only from the layers listed before it
(tests/test_imports.py checks it):

- `errors`, `paths`: the rules every layer follows (one-line user errors, where outputs go);
- `training`: the data on the device, the networks, the training loop, trials on streams;
- `design`: the factors, the designs, a study's spec (its identity), the config schema, costs;
- `runs`: the study storage, its trial queue, the worker processes, progress, the benchmark;
- `stats`: the study's trials as data, its one fitted model, the ranking and verdicts, how
  the ranking holds over epochs and budgets, joint analyses;
- `reporting`: the report (Markdown, HTML, figures), the comparison of studies, the dashboard;
- `api`: the Python API (load, rank, write a report);
- the commands: `python -m study.sweep | train | report | bench`, and `cli`, their runner.
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
