#!/usr/bin/env bash
# Usage: bash benchmarks/results/first-run/run.sh [OUT]   (quiet machine; the README quotes what it prints)
# The README's first run, timed: a fresh FMAE_DATA, train with the defaults, probe; matmul GFLOP/s and load recorded.
set -euo pipefail
out=${1:-runs/first-run}
rm -rf "$out"; mkdir -p "$out"; out=$(cd "$out" && pwd)
export FMAE_DATA="$out/data"
cd "$out"
python - <<'PY' > gflops.txt
import time, torch
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
for _ in range(3): a @ b
t = time.perf_counter(); n = 10
for _ in range(n): a @ b
print(f"{2 * 2048**3 * n / (time.perf_counter() - t) / 1e9:.0f} GFLOP/s fp32 matmul")
PY
cat /proc/loadavg > load-before.txt
s=$(date +%s)
python -m fmae.train > train.log 2>&1
t=$(date +%s)
python -m fmae.probe --checkpoint runs/pretrain > probe.log 2>&1
e=$(date +%s)
cat /proc/loadavg > load-after.txt
echo "train $((t - s)) s, probe $((e - t)) s, total $((e - s)) s" > times.txt
cat times.txt gflops.txt load-before.txt load-after.txt
