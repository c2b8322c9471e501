"""``python -m fmae.evaluate``'s run (:class:`EvaluateConfig`, :func:`run_evaluate`): load a
pre-trained model with its decoder, measure its masked-cube reconstruction error beside the
baselines on centred clips of a data set (:func:`fmae.evaluation.error.evaluate_reconstruction`),
and write ``reconstruction.json``, ``reconstruction.md`` and ``config.yaml``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from fmae.data import SPLITS, ClipDataset, ClipItem, list_items, make_loader, prepared_root
from fmae.data.datasets import resolve_dataset
from fmae.data.loader import ClipLoader, with_region_maps
from fmae.evaluation.error import evaluate_reconstruction, mean_cubes
from fmae.evaluation.report import markdown_report
from fmae.masking import STRATEGIES
from fmae.model import FMAE, FMAEConfig
from fmae.runtime.config import check_choices, setting, to_yaml
from fmae.runtime.device import DTYPES, resolve_device, resolve_dtype
from fmae.runtime.files import write_json
from fmae.weights import load_model
from fmae.weights.checkpoint import training_settings

log = logging.getLogger(__name__)

DEFAULT_RATIO = 0.9
"""The masking ratio when neither the user nor the checkpoint gives one."""


@dataclass
class EvaluateConfig:
    """``python -m fmae.evaluate``: masked-cube reconstruction error on held-out clips."""

    checkpoint: str = setting(
        "",
        "run folder, pre-training checkpoint or whole-model weights (an exported encoder "
        "has no decoder); also the positional argument",
    )
    data_root: str = setting(
        "",
        "preprocessed face videos with region maps (python -m fmae.preprocess): a DAiSEE "
        "layout or any folder of videos; empty: the built-in synthetic set (its Test split)",
    )
    dataset: str = setting(
        "auto",
        "what data_root holds: daisee (one split), folder (every video under it); auto: "
        "daisee when it has a Labels/<split>Labels.csv, else folder",
        ("auto", "daisee", "folder"),
    )
    split: str = setting(
        "",
        "DAiSEE split (Train, Validation, Test); empty: Test. A folder is evaluated whole "
        "(a split there names a subfolder)",
    )
    ratio: float = setting(0.0, "masking ratio in (0, 1); 0: the checkpoint's, else 0.9")
    strategy: str = setting("facial", "masking strategy", STRATEGIES)
    temporal_stride: int = setting(0, "take every k-th frame; 0: the checkpoint's, else 2")
    seed: int = setting(0, "seed of the masks (clip i's mask is drawn with seed (seed, i))")
    window: int = setting(
        300,
        "folder: cut longer videos into windows of this many frames, as pre-training's --window does, "
        "and evaluate the centred clip of each; 0: one centred clip per video",
    )
    clips: int = setting(0, "evaluate the first this many clips (windows); 0: all")
    mean_face: bool = setting(
        False,
        "also measure the mean face: each masked cube predicted by the mean cube at its "
        "position over the Train split's centred clips (DAiSEE layouts only); it knows faces in "
        "general but not the clip, a higher bar than the baselines; the JSON gains mean_face",
    )
    batch_size: int = setting(8, "clips per forward pass")
    num_workers: int = setting(2, "data-loading worker processes (and for preprocessing the synthetic set)")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    dtype: str = setting("auto", "compute dtype: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES)
    out_dir: str = setting("runs/evaluate", "where reconstruction.json and reconstruction.md go")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.ratio != 0.0 and not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1) (or 0: the checkpoint's), got {self.ratio}")
        if min(self.temporal_stride, self.clips, self.num_workers, self.window) < 0 or self.batch_size < 1:
            raise ValueError("temporal_stride, clips, num_workers and window must be >= 0, batch_size >= 1")
        if self.split and self.dataset == "daisee" and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} for a DAiSEE layout, got {self.split!r}")


def evaluation_items(
    root: Path, dataset: str, split: str = "", clips: int = 0, window: int = 0
) -> tuple[list[ClipItem], str]:
    """The items to evaluate, those with region maps, the first ``clips`` (0: all), and
    what they are in words: a DAiSEE ``split`` (default Test), or every video of a folder
    (``dataset`` read by :func:`fmae.data.datasets.resolve_dataset`), cut into windows of
    ``window`` frames (0: one item per video) as pre-training cuts them."""
    if resolve_dataset(root, dataset) == "daisee":
        split = split or "Test"
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} for a DAiSEE layout, got {split!r}")
        items, what = list_items("daisee", root, split), f"the {split} split of {root}"
    else:
        items = list_items("folder", root, split or None, window=window or None)
        what = f"every video under {root / split if split else root}" + (
            f", in {window}-frame windows" if window else ""
        )
    if not items:
        raise FileNotFoundError(f"no videos in {what}")
    items = with_region_maps(items)
    return (items[:clips] if clips else items), what


def run_evaluate(config: EvaluateConfig, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``config.checkpoint`` on centred clips of ``config``'s data; write
    ``reconstruction.json`` (:func:`evaluate_reconstruction`'s result),
    ``reconstruction.md`` (:func:`markdown_report`) and ``config.yaml`` to
    ``config.out_dir``; return the result."""
    if not config.checkpoint:
        raise ValueError(
            "give the CHECKPOINT to evaluate: a run folder, a pre-training checkpoint or whole-model weights"
        )
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model, path = _model_with_decoder(config.checkpoint, device)
    ratio, stride = _ratio_and_stride(config, path)
    c = model.config
    root = prepared_root(config.data_root, c.img_size, workers=config.num_workers, progress=progress)
    items, what = evaluation_items(root, config.dataset, config.split, config.clips, config.window)
    if config.mean_face and resolve_dataset(root, config.dataset) != "daisee":
        raise ValueError(f"--mean-face averages a DAiSEE layout's Train split, and {root} is a plain folder")

    def centred(clips: list[ClipItem]) -> ClipLoader:
        return _centred_loader(config, clips, c.num_frames, stride, device)

    log.info(
        "evaluating %s on %d clips of %s: %s mask at ratio %g, stride %d, %s, %s",
        path,
        len(items),
        what,
        config.strategy,
        ratio,
        stride,
        device,
        dtype,
    )
    _check_clip_size(items, root, c, stride)
    mean_face = _mean_face(root, model, centred, device) if config.mean_face else None
    result = evaluate_reconstruction(
        model,
        centred(items),
        ratio=ratio,
        strategy=config.strategy,
        seed=config.seed,
        device=device,
        dtype=dtype,
        progress=progress,
        total=len(items),
        mean_face=mean_face,
    )
    _write_outputs(config, result, path)
    return result


# ------------------------------------------------------------------------ the stages


def _model_with_decoder(checkpoint: str, device: torch.device) -> tuple[FMAE, Path]:
    """The model of ``checkpoint`` (a run folder, a pre-training checkpoint or whole-model
    weights) on ``device``, and the file it came from; ``ValueError`` when it has no decoder."""
    model, has_decoder, path = load_model(checkpoint, device)
    if not has_decoder:
        raise ValueError(
            f"{path} is an exported encoder without the decoder, so it cannot reconstruct: give the "
            "pre-training run folder or checkpoint (or weights saved with fmae.weights.save_model)"
        )
    return model, path


def _ratio_and_stride(config: EvaluateConfig, path: Path) -> tuple[float, int]:
    """The masking ratio and temporal stride: ``config``'s, else the checkpoint's training
    settings', else :data:`DEFAULT_RATIO` and 2."""
    trained = training_settings(path)
    ratio = config.ratio or float(trained.get("mask_ratio", DEFAULT_RATIO))
    stride = config.temporal_stride or int(trained.get("temporal_stride", 2))
    return ratio, stride


def _centred_loader(
    config: EvaluateConfig, clips: list[ClipItem], num_frames: int, stride: int, device: torch.device
) -> ClipLoader:
    """The centred window of every clip, in order, all of them, in ``config.batch_size`` batches."""
    return make_loader(
        items=clips,
        batch_size=config.batch_size,
        num_frames=num_frames,
        stride=stride,
        random_start=False,
        shuffle=False,
        drop_last=False,
        device=device,
        num_workers=config.num_workers,
        backend="torch",
    )


def _check_clip_size(items: list[ClipItem], root: Path, c: FMAEConfig, stride: int) -> None:
    """``ValueError`` unless the first clip's frames are the model's size."""
    first = ClipDataset(items[:1], c.num_frames, stride, random_start=False, with_regions=False)[0]["clip"]
    if tuple(first.shape[-2:]) != (c.img_size, c.img_size):
        raise ValueError(
            f"clips in {root} are {tuple(first.shape[-2:])}, the model takes {c.img_size}×{c.img_size}: "
            "preprocess the videos to that size"
        )


def _mean_face(
    root: Path, model: FMAE, centred: Callable[[list[ClipItem]], ClipLoader], device: torch.device
) -> torch.Tensor:
    """The mean-face predictor (:func:`mean_cubes`) over the centred clips of ``root``'s Train split."""
    train = list_items("daisee", root, "Train")
    if not train:
        raise FileNotFoundError(f"--mean-face: no videos in the Train split of {root}")
    log.info("mean face: the mean cube at each position over %d centred Train clips", len(train))
    return mean_cubes(model, centred(train), device)


def _write_outputs(config: EvaluateConfig, result: dict[str, Any], checkpoint: Path) -> None:
    """``config.yaml``, ``reconstruction.json`` and ``reconstruction.md`` in ``config.out_dir``."""
    out = Path(config.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(config))
    write_json(out / "reconstruction.json", result)
    (out / "reconstruction.md").write_text(markdown_report(result, checkpoint))


__all__ = [
    "DEFAULT_RATIO",
    "EvaluateConfig",
    "evaluation_items",
    "run_evaluate",
]
