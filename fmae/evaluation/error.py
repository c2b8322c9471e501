"""The measure: masked-cube reconstruction error, overall and per facial region, of a model
and of the baselines on the very same masks (:func:`evaluate_reconstruction`).

Held-out clips are masked as pre-training masks them (:func:`fmae.masking.make_mask`), and
the error is the mean squared error of the masked cubes in the space of the training
targets (the model's :attr:`fmae.model.Reconstruction.target`: pixels, or per-cube
normalised cubes with ``norm_pix_loss``; :func:`target_cubes`). On the same masks and cubes
it measures :data:`fmae.evaluation.baselines.BASELINES` and, on request, the *mean face*:
every cube predicted by the mean cube at its token position over the training clips
(:func:`mean_cubes`), which knows where faces usually are and what they usually look like,
but nothing of the clip at hand, a higher bar than the baselines.

A cube counts for the region that labels its token, as in the facial mask
(:func:`fmae.ops.token_labels` of :func:`fmae.ops.region_histogram`). Clip ``i`` (in the
order the batches give them) is masked with a generator seeded by ``(seed, i)``, so the
masks do not depend on the batch size.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch
from tqdm import tqdm

from fmae.evaluation.baselines import BASELINES, baseline_predictions
from fmae.face import NUM_REGIONS, FaceRegion
from fmae.masking import make_mask, mask_generator, num_masked
from fmae.model import FMAE, normalize_cubes, patchify
from fmae.ops import gather_tokens, region_histogram, token_labels
from fmae.runtime.device import autocast

REGIONS: tuple[str, ...] = tuple(r.name.lower() for r in FaceRegion)
"""The per-region keys of a result, in :class:`fmae.face.FaceRegion` order."""


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
        "model_spread": {"clip_std", "all_sem"},
        "baselines": {<baseline>: {"all", <region>...}}}``, and ``"mean_face": {"all",
        <region>...}`` when ``mean_face`` is given: mean squared errors per masked cube in
        the space of the training targets; the regions are :data:`REGIONS`, ``None`` for a
        region with no masked cube. Leaves the model's mode and torch's global RNG as they
        were.
    """
    device = torch.device(device)
    masking = _Masking.checked(model, ratio, strategy, seed)
    _check_mean_face(model, mean_face)
    totals = _Totals(1 + len(BASELINES) + (mean_face is not None))
    bar = tqdm(total=total, disable=not progress, desc="evaluate", unit="clip", dynamic_ncols=True)
    # A DataLoader draws its workers' base seed from the global RNG: put it back afterwards.
    with _eval_mode(model), bar, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for batch in batches:
            errors, labels = _batch_errors(model, batch, masking, totals.clips, device, dtype, mean_face)
            totals.add(errors, labels)
            bar.update(labels.shape[0])
    if totals.clips == 0:
        raise ValueError("no clips to evaluate")
    return _result(totals, masking, with_mean_face=mean_face is not None)


def target_cubes(clip: torch.Tensor, model: FMAE) -> torch.Tensor:
    """float32 ``[B, N, P]``: every cube of ``clip`` as the model's training target
    (pixels, or per-cube normalised with ``norm_pix_loss``)."""
    c = model.config
    cubes = patchify(clip, c.tubelet)
    return normalize_cubes(cubes, c.in_chans) if c.norm_pix_loss else cubes.float()


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


# ------------------------------------------------------------------------ the stages


@dataclass(frozen=True)
class _Masking:
    """How every clip is masked: ``strategy`` at ``ratio``, hiding ``n_masked`` tokens, clip
    ``i`` with a generator seeded by ``(seed, i)``."""

    strategy: str
    ratio: float
    seed: int
    n_masked: int

    @classmethod
    def checked(cls, model: FMAE, ratio: float, strategy: str, seed: int) -> _Masking:
        """The masking, if it hides some but not all of ``model``'s tokens (else ``ValueError``)."""
        c = model.config
        n_masked = num_masked(strategy, c.grid, ratio)
        if n_masked == 0:
            raise ValueError(
                f"the {strategy} mask at ratio {ratio} hides no token of the grid {c.grid}: raise the ratio"
            )
        if n_masked >= c.num_tokens:
            raise ValueError(
                f"the {strategy} mask at ratio {ratio} hides every token of the grid {c.grid}, so the encoder "
                "would see nothing: lower the ratio"
            )
        return cls(strategy, ratio, seed, n_masked)

    def masks(self, model: FMAE, regions: torch.Tensor, first: int, device: torch.device) -> torch.Tensor:
        """bool ``[B, N]``: the masks of a batch whose first clip is clip ``first``."""
        c = model.config
        return torch.cat(
            [
                make_mask(
                    self.strategy,
                    self.ratio,
                    batch=1,
                    grid=c.grid,
                    region_maps=regions[i : i + 1],
                    tubelet=c.tubelet,
                    device=device,
                    generator=mask_generator(self.seed, first + i, device),
                )
                for i in range(regions.shape[0])
            ]
        )


def _check_mean_face(model: FMAE, mean_face: torch.Tensor | None) -> None:
    c = model.config
    if mean_face is not None and tuple(mean_face.shape) != (c.num_tokens, c.cube_dim):
        raise ValueError(f"mean_face must be [{c.num_tokens}, {c.cube_dim}], got {tuple(mean_face.shape)}")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode, put back in the mode it was in afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class _Totals:
    """Summed squared errors of masked cubes per predictor and region, their counts, and
    the clips seen."""

    def __init__(self, predictors: int) -> None:
        self.sums = torch.zeros(predictors, NUM_REGIONS, dtype=torch.float64)
        self.counts = torch.zeros(NUM_REGIONS, dtype=torch.int64)
        self.clips = 0
        self.model_per_clip: list[torch.Tensor] = []  # float64 [B]: the model's mean error on each clip

    def add(self, errors: Sequence[torch.Tensor], labels: torch.Tensor) -> None:
        """errors: per predictor float ``[B, M]``; labels: int64 ``[B, M]`` region ids."""
        self.clips += labels.shape[0]
        self.model_per_clip.append(errors[0].double().mean(-1).cpu())
        labels = labels.reshape(-1).cpu()
        self.counts += torch.bincount(labels, minlength=NUM_REGIONS)
        for i, err in enumerate(errors):
            self.sums[i] += torch.bincount(labels, weights=err.reshape(-1).double().cpu(), minlength=NUM_REGIONS)

    def spread(self) -> dict[str, float | None]:
        """How much the model's error varies between clips: the standard deviation of its
        per-clip error (every clip masks as many cubes) and the standard error of ``all``."""
        per_clip = torch.cat(self.model_per_clip)
        if per_clip.numel() < 2:
            return {"clip_std": None, "all_sem": None}
        std = float(per_clip.std())
        return {"clip_std": std, "all_sem": std / per_clip.numel() ** 0.5}

    def row(self, i: int) -> dict[str, float | None]:
        total = int(self.counts.sum())
        out: dict[str, float | None] = {"all": float(self.sums[i].sum()) / total if total else None}
        for k, name in enumerate(REGIONS):
            out[name] = float(self.sums[i, k]) / int(self.counts[k]) if self.counts[k] else None
        return out


def _batch_errors(
    model: FMAE,
    batch: dict[str, torch.Tensor],
    masking: _Masking,
    first: int,
    device: torch.device,
    dtype: torch.dtype,
    mean_face: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Squared errors float ``[B, M]`` of the model, each baseline and (given) the mean face
    ``[N, P]`` on one batch's masked cubes, and the cubes' region ids int64 ``[B, M]``;
    ``first`` is the batch's first clip."""
    c = model.config
    clip, regions = batch["clip"].to(device), batch["region_map"].to(device)
    mask = masking.masks(model, regions, first, device)
    with autocast(device, dtype):
        out = model(clip, mask, masking.n_masked)
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


def _result(totals: _Totals, masking: _Masking, with_mean_face: bool) -> dict[str, Any]:
    """:func:`evaluate_reconstruction`'s result from the totals over all clips."""
    result = {
        "clips": totals.clips,
        "masked_cubes": int(totals.counts.sum()),
        "ratio": float(masking.ratio),
        "strategy": masking.strategy,
        "model": totals.row(0),
        "model_spread": totals.spread(),
        "baselines": {name: totals.row(1 + i) for i, name in enumerate(BASELINES)},
    }
    if with_mean_face:
        result["mean_face"] = totals.row(1 + len(BASELINES))
    return result
