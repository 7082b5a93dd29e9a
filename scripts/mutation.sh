#!/usr/bin/env bash
# Mutation testing of the statistics package: mutmut mutates study/stats/ (its [tool.mutmut]
# section in pyproject.toml) and runs the statistics tests against every mutant (the seeded
# simulations and the heavy tier left out: a mutant must be caught by a deterministic test).
# Writes results/mutation.txt (every mutant and its status) and prints the killed rate; survivors
# are read with `mutmut show <name>`. Not in CI (tens of minutes on 2 cores; docs/tests.md).
#
#   pip install -e ".[mutation]"
#   scripts/mutation.sh                          # every mutant of study/stats/
#   scripts/mutation.sh 'study.stats.ranking*'   # one module's
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mutmut > /dev/null; then
    echo "error: mutmut is not installed: pip install -e '.[mutation]'" >&2
    exit 2
fi
mutmut run --max-children "$(nproc)" "$@" > /dev/null
mkdir -p results
mutmut results --all true | sed 's/^ *//' > results/mutation.txt
python - <<'PY'
from collections import Counter

statuses = Counter(line.strip().rsplit(": ", 1)[1] for line in open("results/mutation.txt")
                   if ": " in line)
killed = statuses["killed"] + statuses["timeout"]
run = sum(count for status, count in statuses.items() if status != "not checked")
print(", ".join(f"{status}: {count}" for status, count in statuses.most_common()))
print(f"killed {killed} of {run} mutants ({killed / max(run, 1):.1%}; a mutant no test reaches "
      "counts as surviving); every mutant: results/mutation.txt")
PY
