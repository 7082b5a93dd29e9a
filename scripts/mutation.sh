#!/usr/bin/env bash
# Mutation testing of the statistics package and the study identity: mutmut mutates study/stats/
# and study/design/spec.py (the [tool.mutmut] section of pyproject.toml) and runs their tests
# against every mutant (the seeded simulations and the heavy tier left out: a mutant must be
# caught by a deterministic test). Writes results/mutation.txt (every mutant and its status) and
# docs/mutation-survivors.txt (committed: the commit it ran at, then one survivor a line with the
# reason it survives, kept from the last list where a survivor's name is the same; a new one
# reads "unread"). Not in CI: about an hour of both cores of a 2-core CPU (docs/tests.md).
#
#   pip install -e ".[mutation]"
#   scripts/mutation.sh                          # every statistics mutant and the identity's
#   scripts/mutation.sh 'study.stats.ranking*'   # one module's (the survivors list is not written)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mutmut > /dev/null; then
    echo "error: mutmut is not installed: pip install -e '.[mutation]'" >&2
    exit 2
fi
# the spec's functions that make a study's identity: what it is, its hash, how a run joins it
identity=('study.design.spec.xǁStudySpecǁidentity*' 'study.design.spec.xǁStudySpecǁgrow*'
          'study.design.spec.xǁStudySpecǁfrom_dict*' 'study.design.spec.x_spec_for_run*')
if [ $# -eq 0 ]; then set -- 'study.stats.*' "${identity[@]}"; whole=1; else whole=0; fi
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- study tests || echo ' with changes')"
children=$(nproc)  # before OMP_NUM_THREADS, which nproc honours
# mutmut forks each mutant's tests from one process: an OpenMP thread pool started before a fork
# deadlocks the child (it waits for its timeout, and counts as killed)
export OMP_NUM_THREADS=1
# a whole run starts from nothing (MUTATION_RESUME=1 goes on with the mutants not yet checked)
[ $whole -eq 1 ] && [ "${MUTATION_RESUME:-0}" != 1 ] && rm -rf mutants
mutmut run --max-children "$children" "$@" > /dev/null
mkdir -p results
mutmut results --all true | sed 's/^ *//' > results/mutation.txt
WHOLE=$whole COMMIT=$commit MUTMUT="$(mutmut --version)" python - "$@" <<'PY'
import fnmatch
import os
import sys
from collections import Counter
from pathlib import Path

status = dict(line.strip().rsplit(": ", 1) for line in open("results/mutation.txt")
              if ": " in line)
status = {name: s for name, s in status.items()
          if any(fnmatch.fnmatchcase(name, glob) for glob in sys.argv[1:])}
counts = Counter(status.values())
killed = counts["killed"] + counts["timeout"]
run = sum(count for s, count in counts.items() if s not in ("not checked", "skipped"))
summary = f"killed {killed} of {run} mutants ({killed / max(run, 1):.1%})"
print(", ".join(f"{s}: {count}" for s, count in counts.most_common()))
print(f"{summary}; a mutant no test reaches counts as surviving; every mutant: "
      "results/mutation.txt")
if os.environ["WHOLE"] == "1":
    listed = Path("docs/mutation-survivors.txt")
    reasons = dict(line.split("  ", 1) for line in listed.read_text().splitlines()
                   if line and not line.startswith("#")) if listed.exists() else {}
    survivors = sorted(name for name, s in status.items() if s not in ("killed", "timeout"))
    listed.write_text(
        f"# scripts/mutation.sh at {os.environ['COMMIT']} ({os.environ['MUTMUT']}): {summary}\n"
        "# each survivor (mutmut show NAME), two spaces, why no test kills it\n"
        + "".join(f"{name}  {reasons.get(name, 'unread')}\n" for name in survivors))
    print(f"{len(survivors)} survivors: {listed}")
PY
