#!/usr/bin/env bash
# Issue #25, lever "masking ratio at 112²": the default run (300 steps, tiny, 112², built-in data)
# at --mask-ratio 0.9 (the default) and 0.75, pre-training seeds 0-2, each evaluated on the
# Validation split (40 held-out people, never Test) beside the baselines and the mean face.
# Resumable: a finished cell (its reconstruction.json) is skipped. Usage: bash run.sh [OUT]
set -euo pipefail
out="${1:-runs/levers}"
for ratio in 0.9 0.75; do
  for seed in 0 1 2; do
    cell="$out/ratio$ratio-seed$seed"
    [ -f "$cell/eval/reconstruction.json" ] && continue
    rm -rf "$cell/run"
    start=$(date +%s)
    python -m fmae.train --mask-ratio "$ratio" --seed "$seed" --out-dir "$cell/run" --no-progress
    echo "$(( $(date +%s) - start ))" > "$cell/train_seconds"
    python -m fmae.evaluate "$cell/run" --split Validation --mean-face --out-dir "$cell/eval" --no-progress
  done
done
python - "$out" <<'PY'
import json, sys, pathlib
rows = []
for cell in sorted(pathlib.Path(sys.argv[1]).glob("ratio*-seed*")):
    r = json.loads((cell / "eval" / "reconstruction.json").read_text())
    m, f = r["model"], r["mean_face"]
    best = {k: min(b[k] for b in r["baselines"].values() if b[k] is not None) for k in m if m[k] is not None}
    rows.append((cell.name, (cell / "train_seconds").read_text().strip(), m, f, best))
keys = ["all", "left_eye", "right_eye", "nose", "mouth", "background"]
print("| cell | train s | " + " | ".join(f"{k} model / mean face / best baseline" for k in keys) + " |")
print("|---|---|" + "---|" * len(keys))
for name, secs, m, f, best in rows:
    cells = [f"{m[k]:.3f} / {f[k]:.3f} / {best[k]:.3f}" if m.get(k) is not None else "—" for k in keys]
    print(f"| {name} | {secs} | " + " | ".join(cells) + " |")
PY
