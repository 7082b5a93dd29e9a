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
