"""Pictures of what an FMAE model sees and looks at (issue #5; the paper's Fig. 10).

:func:`run_viz` (``python -m fmae.viz``) takes one clip and writes PNG grids, one
column per shown frame:

- ``regions.png``: the frames, and the parsed regions (:class:`fmae.face.FaceRegion`)
  overlaid on them, with a legend;
- ``masks.png``: one row per masking strategy (facial, tube, random, frame) at the
  same ratio, masked pixels grey as in the MAE figures;
- ``reconstruction.png``: the original, the masked input and the reconstruction
  (:meth:`fmae.model.FMAE.reconstruct`); needs the decoder, so only a pre-training
  checkpoint gives it, not an exported encoder. Beside it ``reconstruction.mp4``: every
  frame of the clip, original | masked input | reconstruction side by side, at the
  clip's frame rate (the video's, divided by the temporal stride), H.264 (MPEG-4 part 2
  where PyAV's FFmpeg has no H.264 encoder);
- ``gradcam.png``: the frames and :func:`fmae.downstream.gradcam.grad_cam` of the probe's
  prediction over them, the predicted class in the title; needs ``probe``.

The panels and the grids are drawn by :mod:`fmae.figures.drawing`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import av
import numpy as np
import torch

from fmae.data import SPLITS, ClipDataset, ClipItem, list_items, prepared_root, region_map_path
from fmae.data.clips import clip_to_frames
from fmae.downstream.features import pooled_dim
from fmae.downstream.gradcam import grad_cam
from fmae.downstream.head import LinearProbe, load_probe
from fmae.face import FaceRegion
from fmae.figures.drawing import (
    REGION_COLOURS,
    heat_overlay,
    mask_pixels,
    masks_panel,
    reconstruction_rows,
    region_overlay,
    save_grid,
    shown_frames,
    tile,
)
from fmae.masking import STRATEGIES, make_mask
from fmae.model import FMAE
from fmae.runtime.config import check_choices, setting, to_yaml
from fmae.runtime.device import resolve_device
from fmae.weights import fingerprint, load_model

log = logging.getLogger(__name__)

VIDEO_GAP = 2
"""White pixels between the original, the masked input and the reconstruction in
``reconstruction.mp4`` (even, so the frame width stays even for 4:2:0 video)."""


@dataclass
class VizConfig:
    """Which model, clip and settings ``python -m fmae.viz`` draws."""

    checkpoint: str = setting(
        "",
        "pre-training checkpoint (python -m fmae.train; gives all four pictures) or exported "
        "encoder (.safetensors with its .json; no reconstruction)",
    )
    probe: str = setting("", "probe.safetensors of python -m fmae.probe, trained on this encoder, for gradcam.png")
    video: str = setting(
        "",
        "a face-crop video to draw (its .regions.npz beside it gives regions.png and the facial "
        "mask); empty: item --index of --data-root",
    )
    data_root: str = setting(
        "", "DAiSEE-layout folder of face clips; empty: the built-in synthetic set, preprocessed as for pre-training"
    )
    split: str = setting("Test", "split of --data-root the clip comes from", SPLITS)
    index: int = setting(0, "which clip of the split")
    ratio: float = setting(0.9, "masking ratio of every strategy, in (0, 1)")
    strategy: str = setting("facial", "masking strategy of the reconstruction", STRATEGIES)
    temporal_stride: int = setting(0, "take every k-th frame of the video; 0: the probe's (as it was trained), else 2")
    frames: int = setting(8, "frames shown per row (spread over the clip)")
    seed: int = setting(0, "seed of the masks")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    num_workers: int = setting(2, "worker processes when the synthetic set is first preprocessed")
    out_dir: str = setting("runs/viz", "where the PNGs go")

    def __post_init__(self) -> None:
        check_choices(self)
        if not self.checkpoint:
            raise ValueError("give --checkpoint: a pre-training checkpoint or an exported encoder")
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if min(self.index, self.temporal_stride, self.num_workers) < 0 or self.frames < 1:
            raise ValueError("index, temporal_stride and num_workers must be >= 0, frames >= 1")
        if self.video and self.data_root:
            raise ValueError("give --video or --data-root, not both")


class Sample(NamedTuple):
    """One clip to draw."""

    clip: torch.Tensor
    """float32 ``[3, T, H, W]``, normalised as the loaders give it."""
    regions: torch.Tensor | None
    """uint8 ``[T, H, W]`` region ids, or ``None`` when the video has no region map."""
    label: int | float | None
    """The item's class or score, ``None`` for a video given on its own."""
    path: Path
    """The video file."""


# ------------------------------------------------------------------------ inputs


def load_sample(item: ClipItem, num_frames: int, stride: int) -> Sample:
    """The centred clip of ``num_frames`` frames ``stride`` apart from ``item``, with its
    region maps when the video has a ``.regions.npz`` beside it."""
    item = ClipItem(*item)
    if not Path(item.path).is_file():
        raise FileNotFoundError(f"no video {item.path}")
    with_regions = region_map_path(item.path).is_file()
    data = ClipDataset([item], num_frames, stride, random_start=False, with_regions=with_regions)[0]
    return Sample(data["clip"], data.get("region_map"), item.label, Path(item.path))


def pick_item(root: str | os.PathLike, split: str, index: int) -> ClipItem:
    """Item ``index`` of a DAiSEE-layout ``split`` under ``root``."""
    items = list_items("daisee", root, split)
    if not 0 <= index < len(items):
        raise ValueError(f"index {index} is out of range: split {split} of {root} has {len(items)} clips")
    return items[index]


def check_probe(meta: dict[str, Any], probe_dim: int, model: FMAE, path: str) -> None:
    """Raise ``ValueError`` unless the probe at ``path`` was trained on ``model``'s encoder."""
    want = meta.get("encoder_fingerprint")
    if want is not None and want != fingerprint(model):
        raise ValueError(
            f"{path} was trained on encoder {want}, but the checkpoint's encoder is {fingerprint(model)}: "
            "give the checkpoint the probe was trained on (or the encoder.safetensors a fine-tuning run "
            "wrote beside it)"
        )
    pool = meta.get("pool", "mean")  # probes written before the setting existed pooled by the mean
    if probe_dim != pooled_dim(model, pool):
        raise ValueError(
            f"{path} takes {probe_dim} features, the encoder gives {pooled_dim(model, pool)} ({pool} pooling)"
        )


# ------------------------------------------------------------------------ panels


def draw_masks(
    sample: Sample, grid: Sequence[int], tubelet: Sequence[int], ratio: float, seed: int
) -> dict[str, torch.Tensor]:
    """bool ``[N]`` mask of every strategy at ``ratio``, each from a generator seeded with
    ``seed``; the facial mask only when the sample has region maps."""
    masks = {}
    for strategy in STRATEGIES:
        if strategy == "facial" and sample.regions is None:
            continue
        regions = None if sample.regions is None else sample.regions[None]
        masks[strategy] = make_mask(
            strategy,
            ratio,
            batch=1,
            grid=grid,
            region_maps=regions,
            tubelet=tubelet,
            generator=torch.Generator().manual_seed(seed),
        )[0]
    return masks


# ------------------------------------------------------------------------ video


def video_fps(path: str | os.PathLike, default: float = 25.0) -> Fraction:
    """The frame rate of the video at ``path`` (``default`` when its container has none)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (av.error.FFmpegError, IndexError):
        rate = None
    return Fraction(rate) if rate else Fraction(default).limit_denominator(1001)


def side_by_side(rows: Sequence[tuple[str, np.ndarray]], gap: int) -> np.ndarray:
    """uint8 ``[T, H, R·W + (R-1)·gap, 3]``: frame ``t`` of every row (``(label, uint8
    [T, H, W, 3])``), left to right, white between them."""
    count = rows[0][1].shape[0]
    return np.stack([tile([np.stack([images[t] for _, images in rows])], gap) for t in range(count)])


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float | Fraction) -> Path:
    """Write uint8 ``[T, H, W, 3]`` RGB frames (even ``H`` and ``W``) as an H.264 ``.mp4``
    (MPEG-4 part 2 where FFmpeg has no H.264 encoder) at ``fps``."""
    path = Path(path)
    if (
        frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
        or frames.shape[1] % 2
        or frames.shape[2] % 2
    ):
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with even H and W, got {frames.dtype} {frames.shape}")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"} if codec == "libx264" else {"qmin": "3", "qmax": "3"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        container.mux(stream.encode(None))
    return path


# ------------------------------------------------------------------------ run


def _class_name(meta: dict[str, Any], k: int) -> str:
    names = meta.get("class_names") or []
    return names[k] if 0 <= k < len(names) else str(k)


def _gradcam_title(meta: dict[str, Any], logits: torch.Tensor, target: int, label: int | float | None) -> str:
    if meta.get("kind") == "regression":
        title = f"Grad-CAM of the engagement score: predicted {float(logits[0].clamp(0, 1)):.3f}"
        return title + ("" if label is None else f", label {float(label):.3f}")
    p = float(logits.softmax(0)[target])
    title = f"Grad-CAM of the prediction: {_class_name(meta, target)} (p {p:.2f})"
    return title + ("" if label is None else f", label {_class_name(meta, int(label))}")


def run_viz(config: VizConfig, progress: bool = True) -> dict[str, Any]:
    """Draw ``config``'s clip into ``config.out_dir`` (see the module docstring).

    Returns ``{"files": {name: path}, "skipped": {name: why}, "clip": path, "stride":
    the temporal stride used}``; a picture
    is skipped, with the reason, when its input is missing (no region map, no decoder,
    no probe).
    """
    device = resolve_device(config.device)
    model, has_decoder, _ = load_model(config.checkpoint, device)
    probe, meta = _load_checked_probe(config, model, device)
    stride = config.temporal_stride or int((meta or {}).get("temporal_stride", 2))
    sample = _load_clip(config, model, stride, progress)
    scene = _start_scene(config, device, model, sample)
    _draw_regions(scene)
    masks = _draw_masks(scene)
    _draw_reconstruction(scene, masks, has_decoder, stride)
    _draw_gradcam(scene, probe, meta)
    _drop_skipped(scene)
    return {"files": scene.files, "skipped": scene.skipped, "clip": str(sample.path), "stride": stride}


@dataclass
class _Scene:
    """What the drawing stages of :func:`run_viz` share, and what they drew or skipped."""

    config: VizConfig
    device: torch.device
    model: FMAE
    sample: Sample
    out: Path
    show: np.ndarray
    """Indices of the frames shown per row."""
    frames: np.ndarray
    """uint8 ``[T, H, W, 3]`` RGB frames of the clip."""
    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _load_checked_probe(
    config: VizConfig, model: FMAE, device: torch.device
) -> tuple[LinearProbe | None, dict[str, Any] | None]:
    """``(probe, meta)`` of ``config.probe``, checked against ``model``; ``(None, None)`` without one."""
    if not config.probe:
        return None, None
    probe, meta = load_probe(config.probe, device)
    check_probe(meta, probe.in_dim, model, config.probe)
    return probe, meta


def _load_clip(config: VizConfig, model: FMAE, stride: int, progress: bool) -> Sample:
    """Load the clip to draw (``config.video`` or item ``index`` of the split) and check its size."""
    c = model.config
    if config.video:
        item = ClipItem(Path(config.video).expanduser())
    else:
        root = prepared_root(config.data_root, c.img_size, workers=config.num_workers, progress=progress)
        item = pick_item(root, config.split, config.index)
    sample = load_sample(item, c.num_frames, stride)
    if tuple(sample.clip.shape[1:]) != (c.num_frames, c.img_size, c.img_size):
        raise ValueError(
            f"{sample.path} gives {sample.clip.shape[-1]}×{sample.clip.shape[-2]} frames, the model takes "
            f"{c.img_size}×{c.img_size}: preprocess the video to that size"
        )
    return sample


def _start_scene(config: VizConfig, device: torch.device, model: FMAE, sample: Sample) -> _Scene:
    """Create the output folder, write ``config.yaml`` and pick the frames to show."""
    out = Path(config.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(config))
    show = shown_frames(model.config.num_frames, config.frames)
    return _Scene(config, device, model, sample, out, show, clip_to_frames(sample.clip))


def _draw_regions(scene: _Scene) -> None:
    """Draw ``regions.png`` (frames and parsed regions), or skip it without a region map."""
    sample, frames, show = scene.sample, scene.frames, scene.show
    name = sample.path.name
    if sample.regions is None:
        scene.skipped["regions"] = (
            f"{name} has no {region_map_path(sample.path).name} beside it (and masks.png has no facial row)"
        )
        return
    legend = {r.name.lower().replace("_", " "): REGION_COLOURS[r] for r in FaceRegion}
    overlay = region_overlay(frames, sample.regions.numpy())
    scene.files["regions"] = save_grid(
        [("frames", frames[show]), ("regions", overlay[show])],
        show.tolist(),
        f"Parsed facial regions: {name}",
        scene.out / "regions.png",
        legend,
    )


def _draw_masks(scene: _Scene) -> dict[str, torch.Tensor]:
    """Draw ``masks.png``, one row per masking strategy; returns the masks."""
    config, c, show = scene.config, scene.model.config, scene.show
    masks = draw_masks(scene.sample, c.grid, c.tubelet, config.ratio, config.seed)
    painted = dict(zip(masks, masks_panel(scene.frames, [mask_pixels(m, c.grid, c.tubelet) for m in masks.values()])))
    scene.files["masks"] = save_grid(
        [(f"{s} ({int(m.sum())}/{m.numel()})", painted[s][show]) for s, m in masks.items()],
        show.tolist(),
        f"Masks at ratio {config.ratio} (grey: hidden from the encoder)",
        scene.out / "masks.png",
    )
    return masks


def _reconstruction_skip_reason(scene: _Scene, masks: dict[str, torch.Tensor], has_decoder: bool) -> str | None:
    """Why the reconstruction cannot be drawn (no decoder, no such mask, nothing visible), or ``None``."""
    config, name = scene.config, scene.sample.path.name
    if not has_decoder:
        return (
            f"{config.checkpoint} is an exported encoder without the decoder: give the "
            "pre-training checkpoint for the reconstruction"
        )
    if config.strategy not in masks:
        return f"the {config.strategy} mask needs a region map, and {name} has none"
    if bool(masks[config.strategy].all()):
        return (
            f"the {config.strategy} mask at ratio {config.ratio} hides every token of this "
            "clip, so the encoder would see nothing: lower --ratio"
        )
    return None


def _draw_reconstruction(scene: _Scene, masks: dict[str, torch.Tensor], has_decoder: bool, stride: int) -> None:
    """Draw ``reconstruction.png`` and ``reconstruction.mp4``, or record why not."""
    why = _reconstruction_skip_reason(scene, masks, has_decoder)
    if why is not None:
        scene.skipped["reconstruction"] = why
        return
    config, c, sample, device = scene.config, scene.model.config, scene.sample, scene.device
    mask = masks[config.strategy]
    recon = scene.model.reconstruct(sample.clip[None].to(device), mask[None].to(device))[0]
    scene.files["reconstruction"] = save_grid(
        reconstruction_rows(sample.clip, mask, recon, c.grid, c.tubelet, scene.show),
        scene.show.tolist(),
        f"Reconstruction, {config.strategy} mask at ratio {config.ratio}",
        scene.out / "reconstruction.png",
    )
    every = reconstruction_rows(sample.clip, mask, recon, c.grid, c.tubelet, np.arange(c.num_frames))
    scene.files["reconstruction_video"] = write_mp4(
        scene.out / "reconstruction.mp4", side_by_side(every, VIDEO_GAP), video_fps(sample.path) / stride
    )


def _draw_gradcam(scene: _Scene, probe: LinearProbe | None, meta: dict[str, Any] | None) -> None:
    """Draw ``gradcam.png`` of the probe's prediction, or skip it without a probe."""
    if probe is None:
        scene.skipped["gradcam"] = "no --probe given (train one with python -m fmae.probe on this checkpoint)"
        return
    frames, show = scene.frames, scene.show
    cam = grad_cam(scene.model, probe, scene.sample.clip[None].to(scene.device), pool=meta.get("pool", "mean"))
    heat = heat_overlay(frames, cam.heat[0].cpu().numpy())
    scene.files["gradcam"] = save_grid(
        [("frames", frames[show]), ("Grad-CAM", heat[show])],
        show.tolist(),
        _gradcam_title(meta, cam.logits[0].cpu(), int(cam.target[0]), scene.sample.label),
        scene.out / "gradcam.png",
    )


def _drop_skipped(scene: _Scene) -> None:
    """Delete earlier runs' files of the skipped pictures and log why each was skipped."""
    out = scene.out
    if "reconstruction" in scene.skipped:
        (out / "reconstruction.mp4").unlink(missing_ok=True)
    for what, why in scene.skipped.items():
        (out / f"{what}.png").unlink(missing_ok=True)  # a picture of an earlier run would pass for this one's
        log.warning("%s.png not drawn: %s", what, why)
