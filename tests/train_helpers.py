"""Shared by the training-run and probing tests."""


def train_args(root, out, steps, *extra, batch_size=2, ckpt_every=3):
    """``python -m fmae.train`` arguments for a fast, deterministic run on ``root``."""
    return [
        "--data-root",
        str(root),
        "--out-dir",
        str(out),
        "--img-size",
        "32",
        "--batch-size",
        str(batch_size),
        "--steps",
        str(steps),
        "--log-every",
        "1",
        "--ckpt-every",
        str(ckpt_every),
        "--image-every",
        "1000",
        "--num-workers",
        "0",
        "--warmup-steps",
        "2",
        "--no-progress",
        *extra,
    ]


# ``python -m fmae.probe`` on a random-init tiny encoder over the session's 32×32 synthetic set:
# 4 frames, 8 tokens, 3 epochs.
FAST_PROBE = [
    "--random-init",
    "--img-size",
    "32",
    "--num-frames",
    "4",
    "--dtype",
    "fp32",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--epochs",
    "3",
    "--batch-size",
    "4",
    "--no-progress",
]
