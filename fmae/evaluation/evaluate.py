"""How well a pre-trained model fills in what the mask hid, beside three naive predictors.

:func:`evaluate_reconstruction` masks held-out clips as pre-training does
(:func:`fmae.masking.make_mask`) and measures the mean squared error of the model's
masked cubes, overall and per facial region, in the space of the training targets (the
model's :attr:`fmae.model.Reconstruction.target`: pixels, or per-cube normalised cubes
with ``norm_pix_loss``). On the very same masks and cubes it measures three baselines
that use only the visible cubes (:data:`BASELINES`, :func:`baseline_predictions`):

- ``visible_mean``: every masked cube is the mean of the clip's visible cubes;
- ``nearest_visible``: the visible cube nearest in space-time, by Euclidean distance on
  the token grid ``(t', h, w)``, the lowest token index among equally near ones;
- ``temporal_interp``: linear interpolation in time between the nearest visible cubes at
  the same spatial position before and after (weighted by the distance in ``t'``); with
  only one of them, that one; with neither, ``nearest_visible``.

They are the bar a model has to clear: one that beats them has learnt more about faces
than copying or averaging what it was shown. A higher bar, on request (``mean_face``):
the *mean face*, every cube predicted by the mean cube at its token position over the
training clips (:func:`mean_cubes`), which knows where faces usually are and what they
usually look like, but nothing of the clip at hand. A cube counts for the region that labels its token,
as in the facial mask (:func:`fmae.ops.token_labels` of :func:`fmae.ops.region_histogram`).
Clip ``i`` (in the order the batches give them) is masked with a generator seeded by
``(seed, i)``, so the masks do not depend on the batch size.

``python -m fmae.evaluate`` (:class:`EvaluateConfig`, :func:`run_evaluate`) runs it on
centred clips of a data set and writes ``reconstruction.json`` and ``reconstruction.md``;
the pre-training run logs the same numbers on a few held-out clips at every checkpoint
(:func:`held_out_set`, :class:`HeldOut`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

from fmae.data import SPLITS, ClipDataset, ClipItem, list_items, make_loader, prepared_root, region_map_path
from fmae.data.clips import label_file
from fmae.data.loader import ClipLoader, with_region_maps
from fmae.face import NUM_REGIONS, FaceRegion
from fmae.masking import STRATEGIES, make_mask, mask_generator, num_masked
from fmae.model import FMAE, normalize_cubes, patchify
from fmae.ops import gather_tokens, region_histogram, token_labels
from fmae.runtime.config import check_choices, setting, to_yaml
from fmae.runtime.device import DTYPES, autocast, resolve_device, resolve_dtype
from fmae.weights import load_model

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("visible_mean", "nearest_visible", "temporal_interp")
"""The naive predictors measured beside the model (see the module docstring)."""
REGIONS: tuple[str, ...] = tuple(r.name.lower() for r in FaceRegion)
"""The per-region keys of a result, in :class:`fmae.face.FaceRegion` order."""
DEFAULT_RATIO = 0.9
"""The masking ratio when neither the user nor the checkpoint gives one."""


# ------------------------------------------------------------------------ baselines


def _grid_coords(grid: Sequence[int], device: torch.device) -> torch.Tensor:
    """int64 ``[N, 3]``: ``(t', h, w)`` of every token, in token order."""
    t, h, w = grid
    axes = torch.meshgrid(
        torch.arange(t, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return torch.stack(axes, dim=-1).reshape(-1, 3)


def nearest_visible_index(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """int64 ``[B, N]``: for every token, the visible token nearest to it on the token
    grid ``(t', h, w)`` (Euclidean), the lowest index among equally near ones; a visible
    token is its own nearest. mask: bool ``[B, N]``, True = masked, at least one visible
    token per row."""
    B, N = mask.shape
    coords = _grid_coords(grid, mask.device)
    d2 = (coords[:, None, :] - coords[None, :, :]).square().sum(-1)  # [N, N] squared distances
    # One integer key per (query, candidate): distance first, then the candidate's index,
    # so the smallest key is the nearest token with the lowest index; hidden candidates last.
    keys = d2 * N + torch.arange(N, device=mask.device)
    hidden = int(d2.max()) * N + N
    return torch.stack([keys.masked_fill(row, hidden).argmin(dim=1) for row in mask.unsqueeze(1)])


def baseline_predictions(targets: torch.Tensor, mask: torch.Tensor, grid: Sequence[int]) -> dict[str, torch.Tensor]:
    """Every baseline's prediction of every cube, from the visible cubes only.

    Args:
        targets: float ``[B, N, P]``, every token's cube in the space of the training
            targets (see :func:`target_cubes`).
        mask: bool ``[B, N]``, True = masked; every row keeps at least one token visible.
        grid: the token grid ``(T', Hp, Wp)``, ``N = T'·Hp·Wp``, tokens in VideoMAE order.

    Returns:
        ``{name: float [B, N, P]}`` for each of :data:`BASELINES`; the predictions mean
        something at masked positions (a visible cube predicts itself).
    """
    B, N, P = targets.shape
    t, h, w = (int(g) for g in grid)
    if mask.shape != (B, N) or t * h * w != N:
        raise ValueError(f"targets {tuple(targets.shape)}, mask {tuple(mask.shape)} and grid {tuple(grid)} disagree")
    visible = ~mask
    if not bool(visible.any(dim=1).all()):
        raise ValueError("a clip has no visible token: nothing to predict the masked cubes from")
    targets = targets.float()
    weights = visible.unsqueeze(-1).float()
    mean = (targets * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
    nearest = targets.gather(1, nearest_visible_index(mask, grid).unsqueeze(-1).expand(B, N, P))

    # Per spatial position, the last visible time slice at or before t' and the first at or after it.
    vis = visible.view(B, t, h * w)
    ts = torch.arange(t, device=mask.device).view(1, t, 1)
    before = torch.where(vis, ts, -1).cummax(dim=1).values
    after = torch.where(vis, ts, t).flip(1).cummin(dim=1).values.flip(1)
    cubes = targets.reshape(B, t, h * w, P)
    prev = cubes.gather(1, before.clamp(min=0).unsqueeze(-1).expand(B, t, h * w, P))
    nxt = cubes.gather(1, after.clamp(max=t - 1).unsqueeze(-1).expand(B, t, h * w, P))
    has_prev, has_next = (before >= 0).unsqueeze(-1), (after < t).unsqueeze(-1)
    toward_next = ((ts - before).float() / (after - before).clamp(min=1).float()).unsqueeze(-1)
    between = prev + toward_next * (nxt - prev)
    interp = torch.where(
        has_prev & has_next,
        between,
        torch.where(has_prev, prev, torch.where(has_next, nxt, nearest.reshape(B, t, h * w, P))),
    )
    return {
        "visible_mean": mean.expand(B, N, P),
        "nearest_visible": nearest,
        "temporal_interp": interp.reshape(B, N, P),
    }


# ------------------------------------------------------------------------ evaluation


def target_cubes(clip: torch.Tensor, model: FMAE) -> torch.Tensor:
    """float32 ``[B, N, P]``: every cube of ``clip`` as the model's training target
    (pixels, or per-cube normalised with ``norm_pix_loss``)."""
    c = model.config
    cubes = patchify(clip, c.tubelet)
    return normalize_cubes(cubes, c.in_chans) if c.norm_pix_loss else cubes.float()


class _Totals:
    """Summed squared errors of masked cubes per predictor and region, and their counts."""

    def __init__(self, predictors: int) -> None:
        self.sums = torch.zeros(predictors, NUM_REGIONS, dtype=torch.float64)
        self.counts = torch.zeros(NUM_REGIONS, dtype=torch.int64)
        self.clips = 0

    def add(self, errors: Sequence[torch.Tensor], labels: torch.Tensor) -> None:
        """errors: per predictor float ``[B, M]``; labels: int64 ``[B, M]`` region ids."""
        labels = labels.reshape(-1).cpu()
        self.counts += torch.bincount(labels, minlength=NUM_REGIONS)
        for i, err in enumerate(errors):
            self.sums[i] += torch.bincount(labels, weights=err.reshape(-1).double().cpu(), minlength=NUM_REGIONS)

    def row(self, i: int) -> dict[str, float | None]:
        total = int(self.counts.sum())
        out: dict[str, float | None] = {"all": float(self.sums[i].sum()) / total if total else None}
        for k, name in enumerate(REGIONS):
            out[name] = float(self.sums[i, k]) / int(self.counts[k]) if self.counts[k] else None
        return out


def _batch_errors(
    model: FMAE,
    batch: dict[str, torch.Tensor],
    ratio: float,
    strategy: str,
    seed: int,
    first: int,
    n_masked: int,
    device: torch.device,
    dtype: torch.dtype,
    mean_face: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Squared errors float ``[B, M]`` of the model, each baseline and (given) the mean face
    ``[N, P]`` on one batch's masked cubes, and the cubes' region ids int64 ``[B, M]``;
    ``first`` is the batch's first clip."""
    c = model.config
    clip, regions = batch["clip"].to(device), batch["region_map"].to(device)
    mask = torch.cat(
        [
            make_mask(
                strategy,
                ratio,
                batch=1,
                grid=c.grid,
                region_maps=regions[i : i + 1],
                tubelet=c.tubelet,
                device=device,
                generator=mask_generator(seed, first + i, device),
            )
            for i in range(clip.shape[0])
        ]
    )
    with autocast(device, dtype):
        out = model(clip, mask, n_masked)
    index = out.masked_index
    labels = token_labels(region_histogram(regions, c.tubelet, NUM_REGIONS)).gather(1, index)
    targets = target_cubes(clip, model)
    errors = [(out.pred.float() - out.target.float()).square().mean(-1)]
    masked_targets = gather_tokens(targets, index)
    for pred in baseline_predictions(targets, mask, c.grid).values():
        errors.append((gather_tokens(pred.contiguous(), index) - masked_targets).square().mean(-1))
    if mean_face is not None:  # one cube per position: index it, no [B, N, P] copy
        errors.append((mean_face.to(masked_targets)[index] - masked_targets).square().mean(-1))
    return errors, labels


@torch.no_grad()
def mean_cubes(
    model: FMAE, batches: Iterable[dict[str, torch.Tensor]], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """float32 ``[N, P]``: the mean, over the clips of ``batches`` (dicts with ``clip``
    float ``[B, 3, T, H, W]``), of each token position's cube as a training target
    (:func:`target_cubes`): the mean-face predictor of :func:`evaluate_reconstruction`."""
    total, clips = None, 0
    for batch in batches:
        cubes = target_cubes(batch["clip"].to(device), model)
        total = cubes.sum(0) if total is None else total + cubes.sum(0)
        clips += cubes.shape[0]
    if total is None:
        raise ValueError("no clips to average into a mean face")
    return total / clips


@torch.no_grad()
def evaluate_reconstruction(
    model: FMAE,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    ratio: float,
    strategy: str = "facial",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    total: int | None = None,
    mean_face: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Masked-cube reconstruction error of ``model`` and of :data:`BASELINES` on ``batches``.

    Args:
        model: an :class:`fmae.model.FMAE` with a trained decoder.
        batches: dicts with ``clip`` float ``[B, 3, T, H, W]`` and ``region_map`` uint8
            ``[B, T, H, W]``, as :func:`fmae.data.make_loader` yields them.
        ratio, strategy: the mask (:func:`fmae.masking.make_mask`).
        seed: clip ``i``'s mask comes from :func:`mask_generator` ``(seed, i)``.
        device, dtype: where and in which autocast dtype the model runs.
        progress, total: a progress bar over the clips (``total``: how many to expect).
        mean_face: float ``[N, P]`` (:func:`mean_cubes` of the training clips), measured
            as one more predictor when given.

    Returns:
        ``{"clips", "masked_cubes", "ratio", "strategy", "model": {"all", <region>...},
        "baselines": {<baseline>: {"all", <region>...}}}``, and ``"mean_face": {"all",
        <region>...}`` when ``mean_face`` is given: mean squared errors per masked cube in
        the space of the training targets; the regions are :data:`REGIONS`, ``None`` for a
        region with no masked cube. Leaves the model's mode and torch's global RNG as they
        were.
    """
    device = torch.device(device)
    c = model.config
    n_masked = num_masked(strategy, c.grid, ratio)
    if n_masked == 0:
        raise ValueError(f"the {strategy} mask at ratio {ratio} hides no token of the grid {c.grid}: raise the ratio")
    if n_masked >= c.num_tokens:
        raise ValueError(
            f"the {strategy} mask at ratio {ratio} hides every token of the grid {c.grid}, so the encoder "
            "would see nothing: lower the ratio"
        )
    if mean_face is not None and tuple(mean_face.shape) != (c.num_tokens, c.cube_dim):
        raise ValueError(f"mean_face must be [{c.num_tokens}, {c.cube_dim}], got {tuple(mean_face.shape)}")
    totals = _Totals(1 + len(BASELINES) + (mean_face is not None))
    was_training = model.training
    model.eval()
    bar = tqdm(total=total, disable=not progress, desc="evaluate", unit="clip", dynamic_ncols=True)
    # A DataLoader draws its workers' base seed from the global RNG: put it back afterwards.
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for batch in batches:
                errors, labels = _batch_errors(
                    model, batch, ratio, strategy, seed, totals.clips, n_masked, device, dtype, mean_face
                )
                totals.add(errors, labels)
                totals.clips += labels.shape[0]
                bar.update(labels.shape[0])
    finally:
        bar.close()
        model.train(was_training)
    if totals.clips == 0:
        raise ValueError("no clips to evaluate")
    result = {
        "clips": totals.clips,
        "masked_cubes": int(totals.counts.sum()),
        "ratio": float(ratio),
        "strategy": strategy,
        "model": totals.row(0),
        "baselines": {name: totals.row(1 + i) for i, name in enumerate(BASELINES)},
    }
    if mean_face is not None:
        result["mean_face"] = totals.row(1 + len(BASELINES))
    return result


# ------------------------------------------------------------------------ reports


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def markdown_report(result: dict[str, Any], checkpoint: str | Path = "") -> str:
    """``reconstruction.md``: the model and every baseline (rows), overall and per region
    (columns), with the clips, masked cubes, ratio, strategy and checkpoint."""
    rows = [("model", result["model"])] + [(name, result["baselines"][name]) for name in BASELINES]
    if "mean_face" in result:
        rows.append(("mean_face", result["mean_face"]))
    keys = ("all", *REGIONS)
    lines = [
        "# Masked-cube reconstruction error",
        "",
        f"- checkpoint: `{checkpoint}`" if checkpoint else "- checkpoint: (not given)",
        f"- clips: {result['clips']}, masked cubes: {result['masked_cubes']}",
        f"- ratio: {result['ratio']:g}, strategy: {result['strategy']}",
        "",
        "Mean squared error per masked cube, in the space of the training targets (pixels, or per-cube "
        "normalised cubes with norm_pix_loss); a cube counts for the region that labels its token; — : no "
        "masked cube in that region. The baselines see the same visible cubes as the model"
        + ("; mean_face predicts each cube by the training clips' mean cube there." if "mean_face" in result else "."),
        "",
        "| predictor | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    lines += [f"| {name} | " + " | ".join(_cell(row[k]) for k in keys) + " |" for name, row in rows]
    return "\n".join(lines) + "\n"


def flat_scalars(result: dict[str, Any], prefix: str = "heldout") -> dict[str, float | None]:
    """``{"<prefix>/<region>": …}`` of the model and ``{"<prefix>/<baseline>/<region>": …}``
    of every baseline (``all`` among the regions), for TensorBoard and ``metrics.jsonl``."""
    values = {f"{prefix}/{k}": v for k, v in result["model"].items()}
    for name in BASELINES:
        values.update({f"{prefix}/{name}/{k}": v for k, v in result["baselines"][name].items()})
    return values


# ------------------------------------------------------------------------ the command's run


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
    clips: int = setting(0, "evaluate the first this many clips; 0: all")
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
        if min(self.temporal_stride, self.clips, self.num_workers) < 0 or self.batch_size < 1:
            raise ValueError("temporal_stride, clips and num_workers must be >= 0, batch_size >= 1")
        if self.split and self.dataset == "daisee" and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} for a DAiSEE layout, got {self.split!r}")


def training_config(path: str | Path) -> dict[str, Any]:
    """The ``fmae.train`` settings stored in a pre-training checkpoint (its metadata only,
    no tensors read); ``{}`` for other files."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["fmae_state"])
        config = dict(state["__dict__"])["config"]
        return {k: v for k, v in config["__dict__"]}
    except Exception:  # exported weights, or a checkpoint written before the config was stored
        return {}


def is_daisee(root: Path, dataset: str) -> bool:
    """Whether ``root`` is read as a DAiSEE layout: ``dataset`` says so, or (``auto``) it
    has a label file of any split."""
    if dataset != "auto":
        return dataset == "daisee"
    return any(label_file(root, split).is_file() for split in SPLITS)


def evaluation_items(root: Path, dataset: str, split: str = "", clips: int = 0) -> tuple[list[ClipItem], str]:
    """The items to evaluate, those with region maps, the first ``clips`` (0: all), and
    what they are in words: a DAiSEE ``split`` (default Test), or every video of a folder."""
    if is_daisee(root, dataset):
        split = split or "Test"
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} for a DAiSEE layout, got {split!r}")
        items, what = list_items("daisee", root, split), f"the {split} split of {root}"
    else:
        items, what = list_items("folder", root, split or None), f"every video under {root / split if split else root}"
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
    model, has_decoder, path = load_model(config.checkpoint, device)
    if not has_decoder:
        raise ValueError(
            f"{path} is an exported encoder without the decoder, so it cannot reconstruct: give the "
            "pre-training run folder or checkpoint (or weights saved with fmae.weights.save_model)"
        )
    trained = training_config(path)
    ratio = config.ratio or float(trained.get("mask_ratio", DEFAULT_RATIO))
    stride = config.temporal_stride or int(trained.get("temporal_stride", 2))
    c = model.config
    root = prepared_root(config.data_root, c.img_size, workers=config.num_workers, progress=progress)
    items, what = evaluation_items(root, config.dataset, config.split, config.clips)
    if config.mean_face and not is_daisee(root, config.dataset):
        raise ValueError(f"--mean-face averages a DAiSEE layout's Train split, and {root} is a plain folder")

    def centred(clips: list[ClipItem]) -> ClipLoader:
        return make_loader(
            items=clips,
            batch_size=config.batch_size,
            num_frames=c.num_frames,
            stride=stride,
            random_start=False,
            shuffle=False,
            drop_last=False,
            device=device,
            num_workers=config.num_workers,
            backend="torch",
        )

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
    first = ClipDataset(items[:1], c.num_frames, stride, random_start=False, with_regions=False)[0]["clip"]
    if tuple(first.shape[-2:]) != (c.img_size, c.img_size):
        raise ValueError(
            f"clips in {root} are {tuple(first.shape[-2:])}, the model takes {c.img_size}×{c.img_size}: "
            "preprocess the videos to that size"
        )
    mean_face = None
    if config.mean_face:
        train = list_items("daisee", root, "Train")
        if not train:
            raise FileNotFoundError(f"--mean-face: no videos in the Train split of {root}")
        log.info("mean face: the mean cube at each position over %d centred Train clips", len(train))
        mean_face = mean_cubes(model, centred(train), device)
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
    out = Path(config.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(config))
    (out / "reconstruction.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "reconstruction.md").write_text(markdown_report(result, path))
    return result


# ------------------------------------------------------------------------ during pre-training


AUTO_CLIPS = 8
"""Held-out clips a pre-training run evaluates on a DAiSEE layout when ``eval_clips`` is -1."""


def held_out_items(root: Path, dataset: str, clips: int, train_items: Sequence[ClipItem]) -> tuple[list[ClipItem], str]:
    """The clips a pre-training run evaluates at its checkpoints, and what they are in words.

    ``clips``: -1 (auto) is :data:`AUTO_CLIPS` on a DAiSEE layout and none on a plain
    folder; 0 none. A DAiSEE layout gives the first clips of its Validation split (else
    Test). A plain folder has no held-out split: given a positive ``clips``, its first
    videos (those of ``train_items``, whole), which training also sees.
    """
    if clips == 0 or (clips < 0 and not is_daisee(root, dataset)):
        return [], "off"
    if is_daisee(root, dataset):
        clips = AUTO_CLIPS if clips < 0 else clips
        split = next((s for s in ("Validation", "Test") if label_file(root, s).is_file()), None)
        if split is None:
            return [], f"off: {root} has neither Validation nor Test labels"
        items = [it for it in list_items("daisee", root, split) if _has_regions(it)]
        return items[:clips], f"the first {min(clips, len(items))} clips of the {split} split"
    paths = list(dict.fromkeys(Path(it.path) for it in train_items))[:clips]
    return [ClipItem(p) for p in paths if _has_regions(ClipItem(p))], (
        f"the first {len(paths)} training videos (a plain folder has no held-out split: training sees them too)"
    )


def _has_regions(item: ClipItem) -> bool:
    return region_map_path(item.path).is_file()


class HeldOut:
    """A few fixed clips, read once, whose reconstruction error a pre-training run logs at
    every checkpoint (:meth:`scalars`). Evaluating changes neither the model's mode nor
    torch's global RNG, so the training that follows is what it would have been."""

    def __init__(
        self,
        batches: list[dict[str, torch.Tensor]],
        *,
        ratio: float,
        strategy: str,
        seed: int,
        device: torch.device,
        dtype: torch.dtype,
        what: str = "",
    ) -> None:
        self.batches, self.ratio, self.strategy, self.seed = batches, ratio, strategy, seed
        self.device, self.dtype, self.what = torch.device(device), dtype, what

    def evaluate(self, model: FMAE) -> dict[str, Any]:
        """:func:`evaluate_reconstruction` of ``model`` on the held-out clips."""
        return evaluate_reconstruction(
            model,
            self.batches,
            ratio=self.ratio,
            strategy=self.strategy,
            seed=self.seed,
            device=self.device,
            dtype=self.dtype,
        )

    def scalars(self, model: FMAE) -> dict[str, float | None]:
        """:func:`flat_scalars` of :meth:`evaluate`: ``heldout/all``, ``heldout/<region>``,
        ``heldout/<baseline>/<region>``."""
        return flat_scalars(self.evaluate(model))


def held_out_set(
    root: Path,
    dataset: str,
    clips: int,
    train_items: Sequence[ClipItem],
    *,
    model: FMAE,
    stride: int,
    ratio: float,
    strategy: str,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int = 8,
) -> HeldOut | None:
    """The pre-training run's :class:`HeldOut` clips (:func:`held_out_items`), centred
    and read once; ``None`` (logged) when there are none or they do not fit the model."""
    try:
        items, what = held_out_items(root, dataset, clips, train_items)
    except (ValueError, FileNotFoundError) as err:
        log.warning("held-out reconstruction error off: %s", err)
        return None
    if not items:
        log.info("held-out reconstruction error: %s", what if what.startswith("off") else f"off: no clips in {what}")
        return None
    c = model.config
    if num_masked(strategy, c.grid, ratio) >= c.num_tokens:
        log.warning("held-out reconstruction error off: the %s mask at ratio %g hides every token", strategy, ratio)
        return None
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            data = ClipDataset(items, c.num_frames, stride, random_start=False, with_regions=True)
            clips_ = [data[i] for i in range(len(data))]
    except (ValueError, FileNotFoundError) as err:
        log.warning("held-out reconstruction error off: cannot read %s: %s", what, err)
        return None
    if any(tuple(d["clip"].shape[1:]) != (c.num_frames, c.img_size, c.img_size) for d in clips_):
        log.warning("held-out reconstruction error off: the clips of %s are not %d×%d", what, c.img_size, c.img_size)
        return None
    batches = [
        {
            "clip": torch.stack([d["clip"] for d in clips_[i : i + batch_size]]).to(device),
            "region_map": torch.stack([d["region_map"] for d in clips_[i : i + batch_size]]).to(device),
        }
        for i in range(0, len(clips_), batch_size)
    ]
    log.info("held-out reconstruction error at every checkpoint on %s (%s mask at ratio %g)", what, strategy, ratio)
    return HeldOut(batches, ratio=ratio, strategy=strategy, seed=seed, device=device, dtype=dtype, what=what)


__all__ = [
    "BASELINES",
    "REGIONS",
    "EvaluateConfig",
    "HeldOut",
    "baseline_predictions",
    "evaluate_reconstruction",
    "flat_scalars",
    "held_out_set",
    "markdown_report",
    "mean_cubes",
    "nearest_visible_index",
    "run_evaluate",
    "target_cubes",
]
