"""The pre-training run: data, steps, logs, reconstruction images, checkpoints, resume.

:func:`pretrain` drives :class:`fmae.pretraining.step.Pretrainer` over a folder of
preprocessed face clips (by default the built-in synthetic face videos, put through the
face pipeline: :func:`fmae.data.prepared_root`) for ``config.steps`` steps, reading
batches through :func:`fmae.data.make_loader` (PyAV or DALI: the same clips either way).
Everything a run writes lands in ``config.out_dir``:

- ``config.yaml``: the settings;
- ``metrics.jsonl``, ``tb/``, ``recon-<step>.png``: see :mod:`fmae.pretraining.records`;
- ``checkpoints/ckpt-<step>.safetensors``: model, optimisers, schedules, step, RNG
  states and config, written atomically; ``resume=True`` continues from the newest.

The data order and the masks depend only on the seed and the step, so a resumed run
takes the same batches and masks as an uninterrupted one, and a run on several
processes (``torchrun``; DDP over NCCL or gloo) the same as one process with the same
global batch. A step whose loss or gradients are not finite is skipped and counted; too
many in a row stop the run with a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from tqdm import tqdm

from fmae.data import ClipItem, epoch_order, list_items, make_loader, prepared_root
from fmae.data.augment import augment_clips, augment_generator, parse_augmentations
from fmae.data.datasets import resolve_dataset
from fmae.data.loader import BACKENDS as LOADER_BACKENDS
from fmae.data.loader import ClipLoader, with_region_maps
from fmae.evaluation.error import mean_cubes
from fmae.evaluation.held_out import HeldOut, held_out_set
from fmae.masking import DECODER_STRATEGIES, DEFAULT_TUBELET, STRATEGIES, mask_generator
from fmae.model import DECODER_HINTS, FMAE, MODEL_CONFIGS, get_config
from fmae.model.losses import ADV_LOSSES
from fmae.pretraining.records import RunLog, log_step, write_reconstruction
from fmae.pretraining.step import ADV_WEIGHT, PretrainConfig, Pretrainer
from fmae.runtime.config import check_choices, setting, to_yaml
from fmae.runtime.device import DTYPES, resolve_dtype
from fmae.runtime.distributed import Distributed
from fmae.runtime.files import write_atomically
from fmae.runtime.lock import folder_lock
from fmae.weights import LoadedModel, load_model
from fmae.weights.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_latest_valid,
    prune_checkpoints,
    save_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Self-supervised pre-training (paper III-C, Algorithm 2)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # The paper's recipe (IV-A): ViT-B on 16 × 224² clips at stride 2, the facial mask at 0.9,
        # AdamW at base lr 1.5e-4 for a batch of 256. For a GPU and real data: give --steps and --batch-size.
        "paper": {
            "model": "fmae_vit_base",
            "img_size": 224,
            "num_frames": 16,
            "temporal_stride": 2,
            "mask_strategy": "facial",
            "mask_ratio": 0.9,
            "base_lr": 1.5e-4,
            "position_embedding": "sincos",
            "augment": "none",
            "decoder_keep": 1.0,
            "decoder_hint": "none",
            "decoder_mean_cube": False,
        },
    }

    model: str = setting("fmae_vit_tiny", "model size", tuple(MODEL_CONFIGS))
    position_embedding: str = setting(
        "sincos_thw",
        "position tables of the encoder and decoder: sincos_thw (one sin/cos table per axis: time, row, "
        "column; with --augment it reconstructs held-out faces better for seeds 0-2, "
        "benchmarks/results/levers.md) or sincos (VideoMAE's 1-D table over the running token index)",
        ("sincos", "sincos_thw"),
    )
    img_size: int = setting(112, "side of the square face crop in pixels (the paper uses 224)")
    num_frames: int = setting(
        8,
        "frames per clip. 8 (with --decoder-keep 0.5: a step costs a third of 16 frames' on a CPU) lets the "
        "first run take 1000 steps, and then it reconstructs held-out eyes, noses and mouths better than the "
        "mean face for pre-training seeds 0-2 (benchmarks/results/levers.md); the paper: 16 (--preset paper)",
    )
    temporal_stride: int = setting(2, "take every k-th frame of the video")
    mask_strategy: str = setting("facial", "which tokens to hide", STRATEGIES)
    mask_ratio: float = setting(
        0.75,
        "fraction of tokens hidden from the encoder. 0.75 at the default 112² (49 tokens a frame): it "
        "reconstructs held-out eyes, noses and mouths better than 0.9 for pre-training seeds 0-2 "
        "(benchmarks/results/levers.md); the paper's 0.9 was chosen for 224² (196 a frame): --preset paper",
    )
    decoder_keep: float = setting(
        0.5,
        "decoder masking (VideoMAE V2): fraction of the masked tokens the decoder "
        "reconstructs and the losses see, in (0, 1]; 1: all of them (the paper)",
    )
    decoder_strategy: str = setting(
        "running_cell",
        "which masked tokens the decoder reconstructs when decoder_keep "
        "< 1: running_cell (VideoMAE V2's 2x2 cell pattern shifting in time), random, or "
        "facial (eyes, nose and mouth first, then hair, skin, background)",
        DECODER_STRATEGIES,
    )
    decoder_hint: str = setting(
        "temporal_interp",
        "what a hidden token's decoder input holds beside the mask token: temporal_interp (the cubes seen "
        "at its place at other times, interpolated; the prediction there is that plus the decoder's output, "
        "so the decoder learns what they miss: it lowers the first run's held-out error for seeds 0-2, the "
        "background's most), interp_nearest (the same, and where its place is hidden at every time the "
        "nearest seen cube, embedded, and added through a gate the decoder learns: lower still overall and on "
        "the nose and mouth, but the probe fell below random init, benchmarks/results/levers.md) or none "
        "(VideoMAE, the paper)",
        DECODER_HINTS,
    )
    decoder_mean_cube: bool = setting(
        False,
        "the decoder adds a learned cube per token position to its prediction of a hidden token without a "
        "hint, started at the mean training cube there (the mean face): it starts from the mean face and "
        "learns what a clip adds to it; better for seed 0, worse for seeds 1-2 (benchmarks/results/levers.md)",
    )
    augment: str = setting(
        "flip,crop,colour",
        "augment each training clip (and its region map) with these, comma-separated: flip (mirror), crop "
        "(80-100 % square, scaled back), colour (per-channel gain, brightness); none: off",
    )
    adv_weight: float = setting(ADV_WEIGHT, "λ, weight of the adversarial loss (0 turns the discriminator off)")
    adv_loss: str = setting(
        "bce",
        "form of the adversarial loss: bce (the paper's discriminator, non-saturating) or "
        "wgan (MARLIN's critic: fake − real score, no gradient penalty)",
        ADV_LOSSES,
    )
    rec_weight: float = setting(
        1.0, "weight of the reconstruction loss (0 with λ > 0: the paper's adversarial-only ablation)"
    )
    norm_pix_loss: bool = setting(
        False, "reconstruct per-cube normalised pixels (VideoMAE) instead of the pixels (the paper)"
    )
    batch_size: int = setting(8, "clips per step (over all processes)")
    accum_steps: int = setting(
        1,
        "gradient accumulation: each process runs its share of a step's batch as this many micro-batches, "
        "one backward each, then updates once: the update of the whole batch (same schedule, lr and masks) "
        "with the activations of one micro-batch at a time; batch_size must split into accum_steps x processes",
    )
    grad_checkpointing: bool = setting(
        False,
        "recompute each encoder and decoder block in the backward pass instead of keeping its activations: "
        "the same gradients in less memory, for about one more forward pass of time",
    )
    steps: int = setting(1000, "optimisation steps")
    base_lr: float = setting(1.5e-2, "learning rate for a batch of 256; the run uses base_lr * batch_size / 256")
    warmup_steps: int = setting(30, "linear warm-up steps before the cosine decay")
    weight_decay: float = setting(0.05, "AdamW weight decay")
    clip_grad: float = setting(1.0, "gradient-norm clipping (0 turns it off)")
    dtype: str = setting("auto", "compute dtype: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES)
    data_root: str = setting(
        "", "preprocessed face videos (python -m fmae.preprocess); empty: the built-in synthetic face videos"
    )
    dataset: str = setting(
        "auto",
        "what data_root holds: daisee (its Train split), folder (every video under it, no labels "
        "needed), auto: daisee when it has Labels/TrainLabels.csv, else folder",
        ("auto", "daisee", "folder"),
    )
    window: int = setting(
        300,
        "folder: cut longer videos into items of this many frames, so a long video gives a clip per "
        "window and epoch (DAiSEE's clips are 300 frames); 0: one item per video",
    )
    out_dir: str = setting("runs/pretrain", "where checkpoints, logs and images go")
    log_every: int = setting(10, "steps between TensorBoard scalars")
    ckpt_every: int = setting(100, "steps between checkpoints")
    image_every: int = setting(100, "steps between reconstruction image grids")
    keep_last: int = setting(3, "checkpoints kept")
    eval_clips: int = setting(
        -1,
        "held-out clips whose masked-cube reconstruction error (model, visible-mean, "
        "nearest-visible and temporal-interpolation baselines; overall and per facial region) "
        "is logged at every checkpoint as heldout/... (with heldout/all_sem, its standard error over the clips): "
        "a DAiSEE layout's Validation clips (else Test), spread over its people, centred, fixed masks. "
        "-1: 40 for a DAiSEE layout, off for a plain folder "
        "(it has no held-out split; a number N there evaluates its first N videos, which "
        "training also sees); 0: off",
    )
    max_bad_steps: int = setting(
        20, "stop after this many steps in a row with a non-finite loss or gradient (each is skipped)"
    )
    num_workers: int = setting(2, "data-loading worker processes")
    loader: str = setting(
        "torch",
        "how clips are read: torch (PyAV in the worker processes) or dali (NVIDIA DALI, which "
        "decodes on the GPU when training on CUDA); both give the same clips in the same order, so the "
        "choice changes the speed, not the experiment",
        LOADER_BACKENDS,
    )
    seed: int = setting(0, "seed of the data order, masks and initialisation")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    compile: bool = setting(False, "torch.compile the model (the first steps compile it: minutes on a CPU)")
    threads: int = setting(0, "CPU threads of torch (0: torch's default); 1 is faster on a machine other jobs share")
    init: str = setting(
        "",
        "start from these weights instead of a random init (FMAE weights, a run folder, or a "
        "checkpoint converted with python -m fmae.convert; their architecture replaces --model); not a "
        "resume: steps, optimiser and schedule start afresh. Without a decoder in them (an exported "
        "encoder) the decoder starts from a random init",
    )

    def __post_init__(self) -> None:
        check_choices(self)
        parse_augmentations(self.augment)
        if self.eval_clips < -1:
            raise ValueError(f"eval_clips must be -1 (auto), 0 (off) or a number of clips, got {self.eval_clips}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0.0 < self.decoder_keep <= 1.0:
            raise ValueError(f"decoder_keep must be in (0, 1], got {self.decoder_keep}")
        positive = (
            "img_size",
            "num_frames",
            "temporal_stride",
            "batch_size",
            "accum_steps",
            "steps",
            "log_every",
            "ckpt_every",
            "image_every",
            "keep_last",
            "max_bad_steps",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        tt, th, _ = DEFAULT_TUBELET
        if self.img_size % th or self.num_frames % tt:
            raise ValueError(
                f"img_size must be a multiple of {th} and num_frames of {tt} (the tubelet "
                f"{'×'.join(map(str, DEFAULT_TUBELET))}), got {self.img_size}, {self.num_frames}"
            )
        if (
            min(self.adv_weight, self.rec_weight, self.warmup_steps, self.num_workers, self.threads, self.window) < 0
            or self.base_lr <= 0
        ):
            raise ValueError(
                "adv_weight, rec_weight, warmup_steps, num_workers, threads and window must be >= 0 and base_lr > 0"
            )
        if self.adv_weight == self.rec_weight == 0:
            raise ValueError("adv_weight and rec_weight cannot both be 0: nothing would train the autoencoder")


# Settings that change what a checkpoint's tensors mean: a resume must keep them. Not accum_steps
# nor grad_checkpointing: they change the memory a step needs, not its update, so a run may resume
# with others (on a smaller machine, say).
_RESUME_FIXED = (
    "model",
    "position_embedding",
    "mask_ratio",
    "img_size",
    "num_frames",
    "mask_strategy",
    "adv_weight",
    "adv_loss",
    "rec_weight",
    "norm_pix_loss",
    "batch_size",
    "seed",
    "decoder_keep",
    "decoder_strategy",
    "decoder_hint",
    "decoder_mean_cube",
)


def train_items(config: TrainConfig, root: Path) -> list[ClipItem]:
    """The items pre-training draws clips from: ``root``'s, read as ``config.dataset``
    says (see :class:`TrainConfig`), those with region maps beside them."""
    dataset = resolve_dataset(root, config.dataset, splits=("Train",))
    options = {"window": config.window or None} if dataset == "folder" else {}
    return with_region_maps(list_items(dataset, root, **options))


def _initial_weights(config: TrainConfig) -> LoadedModel:
    """``config.init``'s model, checked against the clip size the run trains on."""
    init = load_model(config.init)
    mc = init.model.config
    if (mc.img_size, mc.num_frames) != (config.img_size, config.num_frames):
        raise ValueError(
            f"--init {config.init} takes {mc.num_frames}×{mc.img_size}² clips, the run is set to "
            f"{config.num_frames}×{config.img_size}²: give --img-size {mc.img_size} --num-frames "
            f"{mc.num_frames}"
        )
    if not init.has_decoder:
        log.warning("--init %s has no decoder: pre-training starts it from a random init", init.path)
    log.info("pre-training starts from the weights in %s", init.path)
    return init


def fill_batch(items: list[ClipItem], batch_size: int) -> list[ClipItem]:
    """``items``, repeated as often as it takes to fill one batch of ``batch_size``: a
    single short recording still trains, each copy drawing its own clip window."""
    if len(items) >= batch_size:
        return items
    copies = -(-batch_size // len(items))
    log.info("%d items fill no batch of %d: each epoch draws %d clips of every item", len(items), batch_size, copies)
    return items * copies


def _batches(loader: ClipLoader, start: int, steps: int) -> Iterator[dict]:
    """The loader's batches from the current point to step ``steps``, epoch after epoch."""
    step = start
    while step < steps:
        for batch in loader:
            yield batch
            step += 1
            if step == steps:
                return


# What a setting that a checkpoint predates was, in effect, when it was made, where that is not
# today's default.
_BEFORE_THE_SETTING = {"position_embedding": "sincos", "decoder_keep": 1.0, "decoder_hint": "none"}


def _check_resume(saved: dict[str, Any], config: TrainConfig) -> None:
    defaults = {k: _BEFORE_THE_SETTING.get(k, TrainConfig.__dataclass_fields__[k].default) for k in _RESUME_FIXED}
    saved = {k: saved.get(k, defaults[k]) for k in _RESUME_FIXED}
    changed = [k for k in _RESUME_FIXED if saved[k] != getattr(config, k)]
    if changed:
        raise ValueError(
            "cannot resume: the checkpoint was made with other "
            + ", ".join(f"{k} ({saved[k]!r} vs {getattr(config, k)!r})" for k in changed)
            + "; resume with "
            + " ".join(f"--{k.replace('_', '-')} {saved[k]}" for k in changed)
        )


def pretrain(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or with ``resume`` continue) pre-training; returns the last checkpoint's path.

    Under ``torchrun`` every process runs this function: the global batch
    ``config.batch_size`` is split evenly over the ranks, gradients are averaged by DDP,
    and rank 0 alone writes logs, images and checkpoints, holding ``out_dir``'s lock
    (:func:`fmae.runtime.lock.folder_lock`): a second run into it raises ``FolderInUseError``.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    env = Distributed(config.device)
    try:
        with folder_lock(Path(config.out_dir).expanduser()) if env.main else contextlib.nullcontext():
            return _pretrain(config, resume, progress, env)
    finally:
        env.close()


def _pretrain(config: TrainConfig, resume: bool, progress: bool, env: Distributed) -> Path:
    if config.batch_size % (env.world * config.accum_steps):
        raise ValueError(
            f"batch_size {config.batch_size} must split evenly over {env.world} processes x "
            f"{config.accum_steps} accum_steps"
        )
    out_dir = Path(config.out_dir).expanduser()
    state = _resume_state(out_dir / "checkpoints", resume, config)
    root, items = _training_data(config, env, progress)
    dtype = resolve_dtype(config.dtype, env.device)
    run = _trainer(config, state, env.device, dtype)
    if state is None and not config.init and config.decoder_mean_cube:
        _start_mean_cube(run.model, config, root, env.device)
    outputs = _Outputs.open(config, out_dir, env, root, items, run, dtype) if env.main else None
    loader = _loader(config, items, env, run.step_count)
    log.info(
        "pre-training %s on %s (%d items, %s loader), %s, %s, %d process(es), steps %d..%d",
        config.model,
        root,
        len(items),
        config.loader,
        env.device,
        dtype,
        env.world,
        run.step_count,
        config.steps,
    )
    try:
        return _loop(config, env, run, loader, outputs, root, out_dir / "checkpoints", progress)
    finally:
        if outputs is not None:
            outputs.run_log.close()


def _resume_state(ckpt_dir: Path, resume: bool, config: TrainConfig) -> dict[str, Any] | None:
    """The newest valid checkpoint's state when resuming; ``None`` for a fresh run, which
    must not write over another run's checkpoints."""
    if not resume:
        if latest_checkpoint(ckpt_dir) is not None:
            raise FileExistsError(
                f"{ckpt_dir} already holds checkpoints: pass --resume to continue, or choose another --out-dir"
            )
        return None
    found = load_latest_valid(ckpt_dir)
    if found is None:
        raise FileNotFoundError(f"--resume: no usable checkpoint in {ckpt_dir}")
    last, state = found
    _check_resume(state["config"], config)
    log.info("resuming from %s (step %d)", last, state["trainer"]["step"])
    return state


def _training_data(config: TrainConfig, env: Distributed, progress: bool) -> tuple[Path, list[ClipItem]]:
    """The prepared data folder and the items of one epoch (enough to fill a batch)."""
    if env.main:  # one process prepares the synthetic set; the others then find it done
        root = prepared_root(config.data_root, config.img_size, workers=config.num_workers, progress=progress)
    env.barrier()
    if not env.main:
        root = prepared_root(config.data_root, config.img_size, workers=config.num_workers, progress=False)
    return root, fill_batch(train_items(config, root), config.batch_size)


def _trainer(config: TrainConfig, state: dict[str, Any] | None, device: torch.device, dtype: torch.dtype) -> Pretrainer:
    """The model and its optimisers: fresh, from ``--init`` weights, or as a checkpoint left them."""
    init = _initial_weights(config) if config.init and state is None else None
    if init is not None:
        model_config = dataclasses.replace(init.model.config, norm_pix_loss=config.norm_pix_loss)
    else:
        model_config = get_config(
            config.model,
            img_size=config.img_size,
            num_frames=config.num_frames,
            norm_pix_loss=config.norm_pix_loss,
            position_embedding=config.position_embedding,
            decoder_hint=config.decoder_hint,
            decoder_mean_cube=config.decoder_mean_cube,
        )
    torch.manual_seed(config.seed)
    run = Pretrainer(
        model_config,
        PretrainConfig(
            strategy=config.mask_strategy,
            mask_ratio=config.mask_ratio,
            adv_weight=config.adv_weight,
            adv_loss=config.adv_loss,
            rec_weight=config.rec_weight,
            batch_size=config.batch_size,
            base_lr=config.base_lr,
            warmup_steps=config.warmup_steps,
            total_steps=config.steps,
            weight_decay=config.weight_decay,
            clip_grad=config.clip_grad or None,
            autocast=dtype,
            decoder_keep=config.decoder_keep,
            decoder_strategy=config.decoder_strategy,
            accum_steps=config.accum_steps,
            grad_checkpointing=config.grad_checkpointing,
        ),
        device=device,
    )
    if config.compile:
        run.model.compile()  # in place: the state dict keeps its keys, so checkpoints do not change
    if init is not None:
        run.model.load_state_dict(init.model.state_dict())
    if state is not None:
        run.load_state_dict(state["trainer"])
        torch.set_rng_state(state["torch_rng"])
    return run


@torch.no_grad()
def _start_mean_cube(model: FMAE, config: TrainConfig, root: Path, device: torch.device) -> None:
    """A fresh run's ``decoder_mean_cube``: the mean target cube at each token position over
    the centred window of every training clip, unaugmented (the mean face of
    ``fmae.evaluate --mean-face``, over this run's own training clips)."""
    items = train_items(config, root)
    log.info("decoder mean cube: the mean cube at each position over %d centred training clips", len(items))
    loader = make_loader(
        items=items,
        batch_size=config.batch_size,
        num_frames=config.num_frames,
        stride=config.temporal_stride,
        random_start=False,
        shuffle=False,
        with_regions=False,
        device=device,
        backend="torch",
    )
    model.decoder_mean_cube.copy_(mean_cubes(model, loader, device))


@dataclass
class _Outputs:
    """What rank 0 writes besides checkpoints: the settings, the logs, the held-out error."""

    out_dir: Path
    run_log: RunLog
    heldout: HeldOut | None

    @classmethod
    def open(
        cls,
        config: TrainConfig,
        out_dir: Path,
        env: Distributed,
        root: Path,
        items: list[ClipItem],
        run: Pretrainer,
        dtype: torch.dtype,
    ) -> "_Outputs":
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(out_dir / "config.yaml", lambda tmp: tmp.write_text(to_yaml(config)))
        # Read once, on rank 0 only; evaluating touches neither the training batches, masks nor RNG.
        heldout = held_out_set(
            root,
            config.dataset,
            config.eval_clips,
            items,
            model=run.model,
            stride=config.temporal_stride,
            ratio=config.mask_ratio,
            strategy=config.mask_strategy,
            seed=config.seed,
            device=env.device,
            dtype=dtype,
        )
        return cls(out_dir, RunLog(out_dir), heldout)


def _loader(config: TrainConfig, items: list[ClipItem], env: Distributed, start: int) -> ClipLoader:
    """Every process reads its block of each global batch; a resumed run starts inside its epoch."""
    share = config.batch_size // env.world
    per_epoch = len(epoch_order(len(items), 0, False, 0, 0, env.world, share, drop_last=True)) // share
    epoch, first = divmod(start, per_epoch)
    return make_loader(
        items=items,
        batch_size=share,
        num_frames=config.num_frames,
        stride=config.temporal_stride,
        random_start=True,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
        shard_id=env.rank,
        num_shards=env.world,
        device=env.device,
        num_workers=config.num_workers,
        epoch=epoch,
        start_batch=first,
        backend=config.loader,
    )


class _BadSteps:
    """Non-finite (skipped) steps in a row, counted on the device and read on log steps only."""

    def __init__(self, device: torch.device) -> None:
        self.in_a_row = torch.zeros((), device=device)
        self.worst = torch.zeros((), device=device)

    def add(self, skipped: torch.Tensor) -> None:
        self.in_a_row = (self.in_a_row + 1) * skipped
        self.worst = torch.maximum(self.worst, self.in_a_row)

    def check(self, step: int, limit: int, ckpt_dir: Path) -> None:
        if int(self.worst) >= limit:
            raise FloatingPointError(
                f"stopping at step {step}: {int(self.worst)} steps in a row had a non-finite loss or "
                "gradient (they were skipped). Lower --base-lr, check the data, or try --dtype fp32; "
                f"the last good checkpoint is in {ckpt_dir}."
            )


def _loop(
    config: TrainConfig,
    env: Distributed,
    run: Pretrainer,
    loader: ClipLoader,
    outputs: _Outputs | None,
    root: Path,
    ckpt_dir: Path,
    progress: bool,
) -> Path:
    """The steps from where the run stands to ``config.steps``; returns the last checkpoint."""
    start, device = run.step_count, env.device
    last_path = latest_checkpoint(ckpt_dir)
    bar = tqdm(
        total=config.steps,
        initial=start,
        disable=not (progress and env.main),
        desc="pretrain",
        unit="step",
        dynamic_ncols=True,
    )
    pending: list[dict[str, Any]] = []
    bad = _BadSteps(device)
    kinds = parse_augmentations(config.augment)
    tick, clips_since = time.perf_counter(), 0
    with bar:
        for step, batch in enumerate(_batches(loader, start, config.steps), start=start):
            clip, regions = batch["clip"], batch["region_map"]
            if step == start and tuple(clip.shape[-2:]) != (config.img_size, config.img_size):
                raise ValueError(f"clips in {root} are {tuple(clip.shape[-2:])}, but img_size is {config.img_size}")
            if kinds:
                share = clip.shape[0]
                clip, regions = augment_clips(
                    clip, regions, kinds, augment_generator(config.seed, step), env.rank * share, share * env.world
                )
            stats = run.step(clip, regions, mask_generator(config.seed, step, device))
            pending.append(stats)
            bad.add(stats["skipped"])
            clips_since += clip.shape[0] * env.world
            done = step + 1
            seconds = time.perf_counter() - tick  # the held-out evaluation below is no training time
            is_last = done == config.steps
            is_ckpt = done % config.ckpt_every == 0 or is_last
            heldout = outputs.heldout.scalars(run.model) if outputs and outputs.heldout and is_ckpt else {}
            if done % config.log_every == 0 or is_last:
                run_log = outputs.run_log if outputs else None
                values = log_step(env, run_log, done, pending, clips_since / seconds, heldout)
                bar.set_postfix(loss=f"{values['rec_loss']:.4f}", clips_s=f"{values['clips_per_s']:.1f}")
                bad.check(done, config.max_bad_steps, ckpt_dir)
                pending, tick, clips_since = [], time.perf_counter(), 0
            elif heldout:  # a checkpoint between log steps: its own line
                outputs.run_log.scalars(done, heldout)
            if outputs is not None and (done % config.image_every == 0 or is_last):
                write_reconstruction(
                    run, clip[:1], regions[:1], config.mask_strategy, config.mask_ratio, config.seed, done,
                    outputs.out_dir, outputs.run_log,
                )  # fmt: skip
            if is_ckpt:
                last_path = _checkpoint(config, env, run, ckpt_dir, done) or last_path
            bar.update(1)
    return last_path


def _checkpoint(config: TrainConfig, env: Distributed, run: Pretrainer, ckpt_dir: Path, step: int) -> Path | None:
    """Checks the processes agree, then rank 0 writes step ``step``'s checkpoint and prunes old ones."""
    env.check_in_sync(run.model)
    if not env.main:
        return None
    path = save_checkpoint(
        checkpoint_path(ckpt_dir, step),
        {
            "trainer": run.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": dataclasses.asdict(config),
            "model_config": run.model.config.to_dict(),
        },
    )
    prune_checkpoints(ckpt_dir, config.keep_last)
    return path
