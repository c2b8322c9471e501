#!/usr/bin/env bash
# Issue #25: which lever makes the default run (tiny, 112², 300 steps, built-in data) learn
# faces? Each cell pre-trains with the defaults plus its flags, then is evaluated on the
# Validation split (40 held-out people; Test is never looked at) beside the three baselines
# and the mean face, at the cell's own masking ratio, and probed as the README's flow probes it
# (python -m fmae.probe: the 40 other people's Test split, beside the random-init encoder).
# Resumable: a finished stage of a cell (its output file) is skipped.
# Usage: bash run.sh OUT "NAME:FLAGS" ...   e.g. bash run.sh runs/levers "r0.75-s0:--mask-ratio 0.75 --seed 0"
set -euo pipefail
out="$1"; shift
for spec in "$@"; do
  name="${spec%%:*}"; flags="${spec#*:}"
  cell="$out/$name"
  if [ ! -f "$cell/eval/reconstruction.json" ]; then
    rm -rf "$cell/run"; mkdir -p "$cell"
    echo "$flags" > "$cell/flags"
    start=$(date +%s)
    # shellcheck disable=SC2086
    python -m fmae.train $flags --out-dir "$cell/run" --no-progress > "$cell/train.log" 2>&1
    echo "$(( $(date +%s) - start ))" > "$cell/train_seconds"
    # A cell trained on its own data is evaluated on that data's Validation people.
    data=(); [[ " $flags " =~ \ --data-root\ ([^ ]+) ]] && data=(--data-root "${BASH_REMATCH[1]}")
    python -m fmae.evaluate "$cell/run" "${data[@]}" --split Validation --mean-face --out-dir "$cell/eval" \
      --no-progress > "$cell/eval.log" 2>&1
  fi
  if [ ! -f "$cell/probe/metrics.json" ]; then
    python -m fmae.probe --checkpoint "$cell/run" --out-dir "$cell/probe" --no-progress > "$cell/probe.log" 2>&1
  fi
done
python "$(dirname "$0")/table.py" "$out"
