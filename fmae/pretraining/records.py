"""What a pre-training run writes besides checkpoints: scalars and reconstruction images.

- ``metrics.jsonl``: one JSON line of losses, learning rate and clips/s per log step;
- ``tb/``: the same as TensorBoard scalars, plus the reconstruction grids;
- ``recon-<step>.png``: a clip's frames, the masked input and the reconstruction.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from PIL import Image

from fmae.figures.drawing import reconstruction_rows, shown_frames, tile
from fmae.masking import make_mask, mask_generator
from fmae.pretraining.step import Pretrainer
from fmae.runtime.distributed import Distributed
from fmae.runtime.files import write_atomically

log = logging.getLogger(__name__)


def _append_lines(path: Path) -> TextIO:
    """``path`` opened to append lines to, starting on a fresh line when its last was cut
    short (a run killed or out of room mid-write), so no record is glued to a torn one."""
    file = open(path, "a")
    if file.tell():
        with open(path, "rb") as old:
            old.seek(-1, os.SEEK_END)
            if old.read(1) != b"\n":
                file.write("\n")
    return file


class RunLog:
    """The TensorBoard writer and ``metrics.jsonl`` of a run in ``out_dir`` (rank 0 only)."""

    def __init__(self, out_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out_dir / "tb"))
        self.jsonl = _append_lines(out_dir / "metrics.jsonl")

    def scalars(self, step: int, values: dict[str, float | None], prefix: str = "pretrain") -> None:
        """One ``metrics.jsonl`` line; TensorBoard tags ``<prefix>/<key>``, or the key
        itself when it has a ``/`` already (``heldout/all``)."""
        for k, v in values.items():
            if v is not None:
                self.tb.add_scalar(k if "/" in k else f"{prefix}/{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        self.tb.close()
        self.jsonl.close()


def log_step(
    env: Distributed,
    run_log: RunLog | None,
    step: int,
    pending: list[dict[str, Any]],
    clips_per_s: float,
    extra: dict[str, float | None] | None = None,
) -> dict[str, float]:
    """Average the pending steps' stats over steps and ranks (a sync) and log them, with
    ``extra`` values of this rank's own (the held-out evaluation's) in the same line;
    returns the averages (``skipped`` summed)."""
    keys = sorted(pending[-1])
    means = torch.stack(
        [torch.stack([torch.as_tensor(s[k], dtype=torch.float32).to(env.device) for s in pending]).mean() for k in keys]
    )
    values = dict(zip(keys, env.mean(means).tolist()))
    values["skipped"] *= len(pending)  # a count, not a mean
    values["clips_per_s"] = clips_per_s
    values.update(extra or {})
    if "disc_loss" in values and values["disc_loss"] < 1e-3:
        log.warning(
            "step %d: the discriminator's loss is %.2e: it has collapsed (wins every time); "
            "consider a lower --adv-weight",
            step,
            values["disc_loss"],
        )
    if run_log is not None:
        run_log.scalars(step, values)
    return values


@torch.no_grad()
def write_reconstruction(
    run: Pretrainer,
    clip: torch.Tensor,
    regions: torch.Tensor,
    strategy: str,
    ratio: float,
    seed: int,
    step: int,
    out_dir: Path,
    run_log: RunLog,
    frames: int = 8,
) -> Path:
    """``recon-<step>.png`` (and a TensorBoard image) of one clip: rows original, masked
    input, reconstruction; ``frames`` frames spread over the clip. clip: float
    ``[1, 3, T, H, W]``; regions: uint8 ``[1, T, H, W]``."""
    mc = run.model.config
    mask = make_mask(
        strategy,
        ratio,
        batch=1,
        grid=mc.grid,
        region_maps=regions,
        tubelet=mc.tubelet,
        generator=mask_generator(seed + 1, step, clip.device),
        device=clip.device,
    )
    run.model.eval()
    recon = run.model.reconstruct(clip, mask, run.num_masked)
    rows = reconstruction_rows(
        clip[0].cpu(), mask[0].cpu(), recon[0].cpu(), mc.grid, mc.tubelet, shown_frames(mc.num_frames, frames)
    )
    grid = tile([images for _, images in rows], gap=0)
    path = out_dir / f"recon-{step:08d}.png"
    write_atomically(path, lambda tmp: Image.fromarray(np.ascontiguousarray(grid)).save(tmp, format="PNG"))
    run_log.tb.add_image("pretrain/reconstruction", grid, step, dataformats="HWC")
    return path
