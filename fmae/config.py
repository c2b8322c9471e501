"""Run configurations as dataclasses: YAML in, YAML out, every field a CLI flag.

Defaults live in the dataclass and nowhere else. A run's settings come from, in order
of precedence: command-line flags, the ``--config`` YAML file, the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def _field(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass
class TrainConfig:
    """Self-supervised pre-training (paper III-C, Algorithm 2)."""

    model: str = _field("fmae_vit_tiny", "model size", ("fmae_vit_tiny", "fmae_vit_small", "fmae_vit_base", "fmae_vit_large"))
    img_size: int = _field(112, "side of the square face crop in pixels (the paper uses 224)")
    num_frames: int = _field(16, "frames per clip")
    temporal_stride: int = _field(2, "take every k-th frame of the video")
    mask_strategy: str = _field("facial", "which tokens to hide", ("facial", "tube", "random", "frame"))
    mask_ratio: float = _field(0.9, "fraction of tokens hidden from the encoder")
    adv_weight: float = _field(0.1, "λ, weight of the adversarial loss (0 turns the discriminator off)")
    rec_weight: float = _field(1.0, "weight of the reconstruction loss (0 with λ > 0: the paper's adversarial-only ablation)")
    norm_pix_loss: bool = _field(False, "reconstruct per-cube normalised pixels (VideoMAE) instead of the pixels (the paper)")
    batch_size: int = _field(8, "clips per step (over all processes)")
    steps: int = _field(300, "optimisation steps")
    base_lr: float = _field(1.5e-2, "learning rate for a batch of 256; the run uses base_lr * batch_size / 256")
    warmup_steps: int = _field(30, "linear warm-up steps before the cosine decay")
    weight_decay: float = _field(0.05, "AdamW weight decay")
    clip_grad: float = _field(1.0, "gradient-norm clipping (0 turns it off)")
    dtype: str = _field("auto", "compute dtype: bf16 where the CPU/GPU is fast in it, else fp32", ("auto", "bf16", "fp32"))
    data_root: str = _field("", "preprocessed face videos (python -m fmae.preprocess); empty: the built-in synthetic face videos")
    dataset: str = _field("auto", "what data_root holds: daisee (its Train split), folder (every video under it, no labels "
                          "needed), auto: daisee when it has Labels/TrainLabels.csv, else folder", ("auto", "daisee", "folder"))
    window: int = _field(300, "folder: cut longer videos into items of this many frames, so a long video gives a clip per "
                         "window and epoch (DAiSEE's clips are 300 frames); 0: one item per video")
    out_dir: str = _field("runs/pretrain", "where checkpoints, logs and images go")
    log_every: int = _field(10, "steps between TensorBoard scalars")
    ckpt_every: int = _field(100, "steps between checkpoints")
    image_every: int = _field(100, "steps between reconstruction image grids")
    keep_last: int = _field(3, "checkpoints kept")
    max_bad_steps: int = _field(20, "stop after this many steps in a row with a non-finite loss or gradient (each is skipped)")
    num_workers: int = _field(2, "data-loading worker processes")
    loader: str = _field("torch", "how clips are read: torch (PyAV in the worker processes) or dali (NVIDIA DALI, which "
                         "decodes on the GPU when training on CUDA; it shards the items over processes, so its batches "
                         "are other, equally random ones)", ("torch", "dali"))
    seed: int = _field(0, "seed of the data order, masks and initialisation")
    device: str = _field("auto", "cpu, cuda, cuda:N or auto")
    compile: bool = _field(False, "torch.compile the model (the first steps compile it: minutes on a CPU)")
    threads: int = _field(0, "CPU threads of torch (0: torch's default); 1 is faster on a machine other jobs share")

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        positive = ("img_size", "num_frames", "temporal_stride", "batch_size", "steps", "log_every", "ckpt_every", "image_every", "keep_last", "max_bad_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.img_size % 16 or self.num_frames % 2:
            raise ValueError(f"img_size must be a multiple of 16 and num_frames even (tubelet 2×16×16), got {self.img_size}, {self.num_frames}")
        if min(self.adv_weight, self.rec_weight, self.warmup_steps, self.num_workers, self.threads, self.window) < 0 or self.base_lr <= 0:
            raise ValueError("adv_weight, rec_weight, warmup_steps, num_workers, threads and window must be >= 0 and base_lr > 0")
        if self.adv_weight == self.rec_weight == 0:
            raise ValueError("adv_weight and rec_weight cannot both be 0: nothing would train the autoencoder")


def check_choices(config: Any) -> None:
    """Raise ``ValueError`` for a field whose value is not among its declared choices."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            raise ValueError(f"{f.name} must be one of {choices}, got {getattr(config, f.name)!r}")


def _flag_type(tp: Any) -> Any:
    return {"bool": _parse_bool}.get(getattr(tp, "__name__", str(tp)), tp)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config`` and one ``--field-name`` flag per field of dataclass ``cls``;
    a bool flag alone means true (``--finetune``), and takes ``true``/``false`` too."""
    parser.add_argument("--config", type=Path, help="YAML file of settings (flags override it)")
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group("settings (default in brackets)")
    for f in dataclasses.fields(cls):
        switch = {"nargs": "?", "const": True} if hints[f.name] is bool else {}
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=_flag_type(hints[f.name]),
            choices=f.metadata.get("choices"),
            default=None,
            metavar=None if f.metadata.get("choices") else hints[f.name].__name__.upper(),
            help=f"{f.metadata.get('help', '')} [{f.default}]",
            **switch,
        )


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Build ``cls`` from defaults, then ``args.config``, then the flags given."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values.update(load_yaml(cls, args.config))
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None})
    return cls(**values)


def load_yaml(cls: type, path: str | Path) -> dict[str, Any]:
    """The fields of ``cls`` set in a YAML file; an unknown key is an error, not a silent typo."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    return data


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)

