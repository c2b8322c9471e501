"""Check 4, ``dali``: DALI decoding on the GPU against the PyTorch loader: synthetic 224²
clips (the cache's MJPEG, and the same frames as H.264 for comparison) through
``fmae.data.make_loader(backend="dali", device="cuda")`` and ``backend="torch"``: item
order, frames and region maps equal, mean |Δ| of the pixels, time per epoch."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from fmae.benchmarking.gpu.config import GpuCheckConfig
from fmae.benchmarking.gpu.runner import Context, Skip, error_line, free_memory, require_cuda
from fmae.benchmarking.timing import synchronize

DALI_CLIPS, DALI_VIDEO_FRAMES, DALI_REPEATS = 4, 40, 4
DALI_BATCH, DALI_FRAMES, DALI_STRIDE = 4, 16, 2
DALI_LUMA_TOLERANCE = 2.0
"""Largest mean |Δ| of the luma (0–255) between DALI's and PyAV's decoding of the same file. The
colour channels differ more (decoders upsample 4:2:0 chroma differently: about 1.4 mean |Δ| of
RGB at 224², 4 at 32², on DALI's CPU decoder), so they are reported, not checked."""


def write_h264(path: Path, frames: Any, fps: float = 15.0) -> None:
    """``uint8 [T, H, W, 3]`` RGB frames as H.264 (libx264, 4:2:0, no B-frames, a key frame every 8) in an MP4."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": "8", "bf": "0", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _as_h264(items: Sequence[Any], folder: Path) -> list[Any]:
    """The same videos re-encoded as H.264 ``.mp4`` beside copies of their region maps."""
    import numpy as np

    from fmae.data import ClipItem, read_frames, region_map_path
    from fmae.data.clips import count_frames

    folder.mkdir(parents=True, exist_ok=True)
    out, done = [], {}
    for item in items:
        if item.path not in done:
            dst = folder / f"{Path(item.path).stem}.mp4"
            write_h264(dst, read_frames(item.path, np.arange(count_frames(item.path))))
            shutil.copyfile(region_map_path(item.path), region_map_path(dst))
            done[item.path] = dst
        out.append(ClipItem(done[item.path], item.label, item.start, item.stop))
    return out


def _two_epochs(backend: str, device: Any, row: dict, **kw: Any) -> list[dict]:
    """The first epoch of ``backend``'s loader (it builds the pipeline: kept on the CPU for the
    comparison, and timed apart), then a second one, timed; the times into ``row``."""
    from fmae.data import make_loader

    loader = make_loader(backend=backend, device=str(device), **kw)
    try:
        t0 = time.perf_counter()
        batches, where = [], set()
        for b in loader:
            where.add(str(b["clip"].device))
            batches.append({k: v.detach().to("cpu") for k, v in b.items()})
        row[f"{backend}_first_epoch_s"] = round(time.perf_counter() - t0, 3)
        row[f"{backend}_clip_device"] = ",".join(sorted(where))
        t0 = time.perf_counter()
        clips = 0
        for b in loader:
            clips += int(b["clip"].shape[0])
        synchronize(device)
        seconds = time.perf_counter() - t0
    finally:
        del loader
    row[f"{backend}_epoch_s"] = round(seconds, 3)
    row[f"{backend}_clips_per_s"] = round(clips / seconds, 2) if seconds > 0 else None
    return batches


def _compare_epochs(first: dict[str, list[dict]], row: dict) -> list[str]:
    """DALI's first epoch against torch's (items, frames, region maps, pixels) into ``row``; the problems."""
    import torch

    from fmae.data import IMAGENET_STD

    def cat(backend: str, key: str) -> torch.Tensor:
        return torch.cat([b[key] for b in first[backend]])

    problems = []
    row["same_order"] = torch.equal(cat("dali", "index"), cat("torch", "index"))
    row["same_frames"] = torch.equal(cat("dali", "frame_index"), cat("torch", "frame_index"))
    row["same_region_maps"] = torch.equal(cat("dali", "region_map"), cat("torch", "region_map"))
    a, b = cat("dali", "clip").float(), cat("torch", "clip").float()
    row["clip_shape"] = list(a.shape)
    if a.shape != b.shape:
        problems.append(f"clip shapes differ: DALI {tuple(a.shape)}, torch {tuple(b.shape)}")
    else:
        diff = (a - b) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255.0  # in 0-255 pixel units
        luma = (diff * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1, 1)).sum(dim=1)
        row["mean_abs_pixel_diff"] = round(float(diff.abs().mean()), 4)
        row["max_abs_pixel_diff"] = round(float(diff.abs().max()), 2)
        row["mean_abs_luma_diff"] = round(float(luma.abs().mean()), 4)
        if not row["mean_abs_luma_diff"] <= DALI_LUMA_TOLERANCE:
            problems.append(f"mean |luma difference| {row['mean_abs_luma_diff']} over {DALI_LUMA_TOLERANCE}")
    return problems + [
        f"{what} differ"
        for what, same in (
            ("item orders", row["same_order"]),
            ("frame indices", row["same_frames"]),
            ("region maps", row["same_region_maps"]),
        )
        if not same
    ]


def compare_loaders(items: Sequence[Any], device: Any, batch_size: int, num_frames: int, stride: int) -> dict:
    """One epoch of DALI and of the PyTorch loader compared (items, frames, region maps,
    pixels), then a second epoch of each timed."""
    kw = dict(
        items=list(items),
        batch_size=batch_size,
        num_frames=num_frames,
        stride=stride,
        seed=0,
        shuffle=True,
        with_regions=True,
    )
    row: dict[str, Any] = {}
    first = {backend: _two_epochs(backend, device, row, **kw) for backend in ("dali", "torch")}
    problems = _compare_epochs(first, row)
    if row.get("dali_epoch_s") and row.get("torch_epoch_s"):
        row["dali_speedup"] = round(row["torch_epoch_s"] / row["dali_epoch_s"], 3)
    row["status"] = "failed" if problems else "ok"
    if problems:
        row["error"] = "; ".join(problems)
    return row


def _synthetic_items(ctx: Context, size: int, clips: int, video_frames: int, repeats: int) -> tuple[list, list]:
    """Synthetic clips in the cache's format under the scratch folder: the videos, and the items
    (each video ``repeats`` times: other windows, real decoding)."""
    from fmae.data import ClipItem, SyntheticConfig, ensure_synthetic_daisee, list_clips

    config = SyntheticConfig(
        seed=1,
        num_subjects=max(1, clips // 2),
        clips_per_subject=2,
        num_frames=video_frames,
        size=size,
        split_fractions=(1.0, 0.0, 0.0),
    )
    root = ensure_synthetic_daisee(ctx.scratch / "dali", config)
    videos = [ClipItem(p, level) for p, level in list_clips(root, "Train")]
    return videos, [it for _ in range(repeats) for it in videos]


def measure_dali(
    ctx: Context,
    device: Any,
    size: int = 224,
    codecs: Sequence[str] = ("mjpeg", "h264"),
    clips: int = DALI_CLIPS,
    video_frames: int = DALI_VIDEO_FRAMES,
    repeats: int = DALI_REPEATS,
    batch_size: int = DALI_BATCH,
    num_frames: int = DALI_FRAMES,
    stride: int = DALI_STRIDE,
) -> None:
    """:func:`compare_loaders` on synthetic clips in each of ``codecs`` into ``ctx.details["variants"]``.

    MJPEG is the clip cache's codec: its failure fails the check. H.264 is there to tell
    a codec problem from a DALI one; its failure is a note.
    """
    from fmae.data import dali_available

    if not dali_available():
        raise Skip("NVIDIA DALI is not installed (pip install nvidia-dali-cuda130)")
    if importlib.util.find_spec("av") is None:
        raise Skip("PyAV (av) is not installed: the synthetic clips can be neither written nor read")
    t0 = time.perf_counter()
    videos, items = _synthetic_items(ctx, size, clips, video_frames, repeats)
    ctx.details["settings"] = {
        "videos": len(videos),
        "items": len(items),
        "size": size,
        "video_frames": video_frames,
        "batch_size": batch_size,
        "num_frames": num_frames,
        "stride": stride,
        "device": str(device),
        "num_workers": 0,
        "generate_s": round(time.perf_counter() - t0, 2),
    }
    variants: dict[str, dict] = ctx.details.setdefault("variants", {})
    for codec in codecs:
        if ctx.left() < 10.0:
            variants[codec] = {"status": "skipped", "reason": "out of time"}
            continue
        try:
            these = items if codec == "mjpeg" else _as_h264(items, ctx.scratch / "h264")
            variants[codec] = compare_loaders(these, device, batch_size, num_frames, stride)
        except Exception as err:  # noqa: BLE001
            variants[codec] = {"status": "failed", "error": error_line(err)}
        if variants[codec]["status"] == "failed":
            line = f"{codec}: {variants[codec]['error']}"
            (ctx.failures if codec == "mjpeg" else ctx.notes).append(line)
        ctx.save()
        free_memory()


def plan(config: GpuCheckConfig, root: Path | None) -> list[str]:
    """What :func:`check` would run, for the dry run."""
    return [
        f"{DALI_CLIPS} synthetic 224^2 clips of {DALI_VIDEO_FRAMES} frames as MJPEG (the cache's codec) and "
        f"H.264, {DALI_REPEATS} windows each; make_loader(backend='dali', device='cuda') against "
        "backend='torch'",
        f"batches of {DALI_BATCH} x {DALI_FRAMES} frames (stride {DALI_STRIDE}): same items, frames and region "
        "maps, mean |Δ| of luma (checked) and RGB, seconds per epoch",
    ]


def check(ctx: Context) -> None:
    require_cuda()
    measure_dali(ctx, "cuda")
