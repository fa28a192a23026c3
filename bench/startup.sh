#!/bin/bash
# Start-up and time to first answer of the flowhash commands (issue 11 part 4).
#
# usage: bench/startup.sh REPO DB SNIPPET [RUNS] [BEFORE_REPO]
#   REPO: the checkout to time (run from its root: python -m puts the cwd first on sys.path); DB: a database directory;
#   SNIPPET: a 3 s audio file; RUNS: runs per command (5); BEFORE_REPO: a second checkout timed the same
#   way in the same loop (e.g. `git archive f0766ec | tar -x -C /tmp/before`), for before/after rows.
# Each command runs warm (page cache as the previous run left it) and cold: before every cold run the
# pages of python's site-packages, both checkouts, the database and the snippet are dropped from the page
# cache (posix_fadvise DONTNEED: no root needed; pages other processes hold mapped stay). Uses hyperfine
# when installed (apt-get install hyperfine), else a loop of RUNS runs. Prints `uptime` before and after.
set -u
REPO=$(realpath "$1"); DB=$(realpath "$2"); SNIP=$(realpath "$3"); RUNS=${4:-5}; BEFORE=${5:-}
SITE=$(python -c "import site; print(site.getsitepackages()[0])")
EVICT="python $REPO/bench/evict_cache.py $SITE $REPO ${BEFORE:+$(realpath "$BEFORE")} $DB $SNIP"
export OMP_WAIT_POLICY=PASSIVE
echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(uptime)"
echo "# repo $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))${BEFORE:+  before $BEFORE}"
declare -a NAMES CMDS
add() { NAMES+=("$1"); CMDS+=("$2"); }
add "import torch" "python -c 'import torch'"
add "import numpy+faiss" "python -c 'import numpy, faiss'"
for side in after ${BEFORE:+before}; do
  root=$REPO; [ "$side" = before ] && root=$(realpath "$BEFORE")
  add "$side: flowhash --help" "cd $root && PYTHONPATH=$root python -m faiss_flowhash.cli --help"
  add "$side: flowhash stats" "cd $root && PYTHONPATH=$root python -m faiss_flowhash.cli stats $DB"
  add "$side: flowhash query (3 s snippet)" "cd $root && PYTHONPATH=$root python -m faiss_flowhash.cli query $DB $SNIP"
done
for mode in warm cold; do
  for i in "${!NAMES[@]}"; do
    if command -v hyperfine > /dev/null; then
      prep=(--warmup 1); [ "$mode" = cold ] && prep=(--prepare "$EVICT")
      hyperfine --style none --runs "$RUNS" "${prep[@]}" --export-json /tmp/startup_hf.json \
        "${CMDS[$i]}" > /dev/null 2>&1
      python - "$mode" "${NAMES[$i]}" <<'PY'
import json, sys
r = json.load(open("/tmp/startup_hf.json"))["results"][0]
t = r["times"]
print(f"| {sys.argv[1]} | {sys.argv[2]} | {r['mean']:.2f} +- {r['stddev']:.2f} | {min(t):.2f} | {max(t):.2f} | " + " ".join(f"{x:.2f}" for x in t) + " |")
PY
    else
      ts=()
      for r in $(seq "$RUNS"); do
        [ "$mode" = cold ] && eval "$EVICT"
        s=$(date +%s.%N); eval "${CMDS[$i]}" > /dev/null 2>&1; e=$(date +%s.%N)
        ts+=($(python3 -c "print(f'{$e-$s:.2f}')"))
      done
      echo "| $mode | ${NAMES[$i]} | ${ts[*]} |"
    fi
  done
done
echo "# $(uptime)"
