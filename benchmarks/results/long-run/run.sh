#!/usr/bin/env bash
# Issue #25, "how long until it has learnt faces": one run of the default recipe to 10k steps
# (python -m fmae.train defaults, --steps 10000: the cosine schedule spans the whole run), every
# 100th checkpoint kept. At each milestone that has a checkpoint, the held-out error on the
# Validation split beside the baselines and the mean face (python -m fmae.evaluate --mean-face)
# and the probe beside the random init it started from (python -m fmae.probe).
# Resumable: rerun the same command; the run goes on from its newest checkpoint and finished
# milestones are skipped. TRAIN=0 only measures the milestones reached so far (stop the run
# first: both want the CPU). Usage: [TRAIN=0] bash run.sh [OUT] [STEPS] [TRAIN FLAGS...]
set -euo pipefail
out="${1:-runs/long}"; steps="${2:-10000}"; shift $(( $# < 2 ? $# : 2 ))
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
if [ "${TRAIN:-1}" != 0 ]; then
  resume=(); ls "$out"/run/checkpoints/ckpt-*.safetensors > /dev/null 2>&1 && resume=(--resume)
  python -m fmae.train --steps "$steps" --ckpt-every 100 --keep-last 1000 --out-dir "$out/run" \
    --no-progress "${resume[@]}" "$@" >> "$out/train.log" 2>&1
fi
for step in 300 1000 3000 10000; do
  ckpt="$out/run/checkpoints/ckpt-$(printf %08d "$step").safetensors"
  [ -f "$ckpt" ] || continue
  [ -f "$out/eval-$step/reconstruction.json" ] || python -m fmae.evaluate "$ckpt" --split Validation --mean-face \
    --out-dir "$out/eval-$step" --no-progress > "$out/eval-$step.log" 2>&1
  [ -f "$out/probe-$step/metrics.json" ] || python -m fmae.probe --checkpoint "$ckpt" \
    --out-dir "$out/probe-$step" --no-progress > "$out/probe-$step.log" 2>&1
done
python "$here/report.py" "$out" --plot "$here/long-run.png" > "$here/long-run.md"
