"""The statistics, as plain data: a study's trials as DataFrames (`frames`), which trials
compare a factor's levels (`slices`), the one fitted model (`fit`, with its simultaneous critical
values in `critical`), the ranking and verdicts (`ranking`), how the ranking holds over epochs
and budgets (`stability`), joint analyses of grid and sampled designs (`joint`), and synthetic
studies of known truth for simulations and tests (`synthetic`)."""
