"""Issue #25 lever: more people. A pre-training set of 400 synthetic people (320 train, 40
validation, 40 test), one 32-frame clip each, put through the face pipeline at 112²."""

import sys
from pathlib import Path

from fmae.data.face_pass import PreprocessConfig
from fmae.data.preprocess import preprocess
from fmae.data.synthetic import SyntheticConfig, ensure_synthetic_daisee

if __name__ == "__main__":
    root = Path(sys.argv[1])
    config = SyntheticConfig(
        seed=1, num_subjects=400, clips_per_subject=1, num_frames=32, split_fractions=(0.8, 0.1, 0.1)
    )
    raw = ensure_synthetic_daisee(root, config)
    print(preprocess(raw, root / "faces112", PreprocessConfig(size=112), workers=2, progress=False))
