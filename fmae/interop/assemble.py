"""Assembling an FMAE model from another implementation's tensors: what the readers share.

A reader (:mod:`fmae.interop.hf`, :mod:`~fmae.interop.videomae`, :mod:`~fmae.interop.marlin`)
takes the source's tensors key by key through :class:`Tensors`, which remembers what it
used so that nothing is lost silently: a key no reader understands is an error, and one
that FMAE has no place for (a classifier, MARLIN's discriminator) is dropped with a note.
Sizes the source does not store (attention heads, clip size) come from :class:`Overrides`
or documented defaults, and every such guess is a note in the result.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple

import torch

from fmae.model import FMAE, FMAEConfig
from fmae.weights import ENCODER_PREFIXES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Head sizes of the ViTs whose width is not 64 per head (ViT-H/14: 1280 = 16 × 80, ViT-g/14: 1408 = 16 × 88).
_KNOWN_HEADS = {1280: 16, 1408: 16}


@dataclasses.dataclass
class Overrides:
    """What the user says about a source whose file does not store it; 0 / ``None`` means
    "from the source, else the default"."""

    num_heads: int = 0
    decoder_num_heads: int = 0
    img_size: int = 0
    num_frames: int = 0
    layer_norm_eps: float = 0.0
    norm_pix_loss: bool | None = None
    input_norm: str = "imagenet"
    """``imagenet``: the converted model takes FMAE's clips (ImageNet mean/std); a source
    trained on [0, 1] pixels (MARLIN) gets that scaling folded into its patch embedding
    (and its pixel head). ``source``: it takes the source's own input, unchanged."""


class Converted(NamedTuple):
    """An FMAE model read from another implementation's weights."""

    model: FMAE
    """In eval mode; its decoder is freshly initialised when ``has_decoder`` is False."""
    has_decoder: bool
    source: dict[str, Any]
    """JSON-able provenance: ``format``, ``path``, ``layout`` and ``notes`` (what was
    inferred, dropped or approximated)."""


class Tensors:
    """A source's tensors by key, remembering which were used."""

    def __init__(self, state: dict[str, torch.Tensor], where: str) -> None:
        self.state, self.where, self.used = state, where, set[str]()

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ValueError(f"{self.where} lacks {key!r} (found {describe_keys(self.state)})")
        self.used.add(key)
        return self.state[key]

    def take_opt(self, key: str) -> torch.Tensor | None:
        return self.take(key) if key in self.state else None

    def count(self, prefix: str) -> int:
        """How many numbered children ``{prefix}0.``, ``{prefix}1.``, … there are (checked to be contiguous)."""
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in self.state if (m := pattern.match(k))}
        if found and found != set(range(max(found) + 1)):
            raise ValueError(f"{self.where}: {prefix}N has gaps: {sorted(found)}")
        return len(found)

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.state)

    def drop(self, prefix: str) -> list[str]:
        """Mark every key under ``prefix`` used (a part FMAE has no place for); returns them."""
        dropped = sorted(k for k in self.state if k.startswith(prefix) and k not in self.used)
        self.used.update(dropped)
        return dropped

    def check_all_used(self) -> None:
        left = sorted(set(self.state) - self.used)
        if left:
            raise ValueError(
                f"{self.where}: keys this converter does not understand: {left[:8]}"
                f"{f' … ({len(left)} in all)' if len(left) > 8 else ''}; nothing was written, "
                f"as they would be lost"
            )


def describe_keys(keys: Any, limit: int = 10) -> str:
    keys = sorted(keys)
    return f"{keys[:limit]}{f' … ({len(keys)} keys in all)' if len(keys) > limit else ''}"


def layout_tensors(state: dict[str, torch.Tensor], path: Any, markers: tuple[str, ...], what: str) -> Tensors:
    """``state`` as :class:`Tensors`, or ``ValueError`` naming ``markers`` and the keys found when it
    holds none of the keys that only a ``what`` checkpoint has."""
    t = Tensors(state, str(path))
    if not any(k in t for k in markers):
        raise ValueError(
            f"{path} is not a {what} checkpoint: it lacks {' or '.join(map(repr, markers))} "
            f"(found {describe_keys(state)})"
        )
    return t


def conv3d_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """A Conv3d patch embedding ``[D, C, tt, th, tw]`` as FMAE's ``Linear`` weight ``[D, tt·th·tw·C]``."""
    return weight.permute(0, 2, 3, 4, 1).reshape(weight.shape[0], -1)


def linear_to_conv3d(weight: torch.Tensor, tubelet: tuple[int, int, int], in_chans: int) -> torch.Tensor:
    """Inverse of :func:`conv3d_to_linear`."""
    return weight.reshape(weight.shape[0], *tubelet, in_chans).permute(0, 4, 1, 2, 3).contiguous()


def heads_for(width: int, given: int, what: str, notes: list[str]) -> int:
    """``given`` if set, else the heads of the standard ViT of that width (64 channels each)."""
    if given:
        notes.append(f"{what}: {given} attention heads, as given")
        return given
    heads = _KNOWN_HEADS.get(width, width // 64 if width % 64 == 0 else 0)
    if not heads:
        raise ValueError(
            f"{what} width {width} is not a multiple of 64 and the file does not store its number of "
            f"attention heads: give it (--num-heads / --decoder-num-heads)"
        )
    notes.append(
        f"{what}: {heads} attention heads inferred from the width {width} (not stored in the file; "
        f"give the number if the source used another)"
    )
    return heads


def clip_size(
    num_tokens: int | None, tubelet: tuple[int, int, int], over: Overrides, notes: list[str]
) -> tuple[int, int]:
    """``(img_size, num_frames)``: from the overrides, checked against (or derived from) a
    stored position table of ``num_tokens`` rows; without one, 16 frames of 224²."""
    tt, th, tw = tubelet
    if num_tokens is None:
        img, frames = over.img_size or 224, over.num_frames or 16
        if not (over.img_size and over.num_frames):
            notes.append(
                f"clip size {frames}×{img}² assumed (not stored in the file; --num-frames / --img-size to change it)"
            )
        return img, frames
    if over.img_size:
        img = over.img_size
        frames = over.num_frames or tt * num_tokens // max(1, (img // th) * (img // tw))
    else:
        frames = over.num_frames or 16
        img = math.isqrt(num_tokens * tt * th * tw // frames) if frames % tt == 0 else 0
    fits = min(img, frames) > 0 and not (frames % tt or img % th or img % tw)
    if not fits or (frames // tt) * (img // th) * (img // tw) != num_tokens:
        raise ValueError(
            f"the file's position table has {num_tokens} rows, which does not fit a clip of "
            f"{frames} frames of {img}² with tubelet {tubelet}: give --num-frames and --img-size"
        )
    notes.append(f"clip size {frames}×{img}² from the stored position table ({num_tokens} tokens)")
    return img, frames


def mlp_ratio(width: int, hidden: int, what: str) -> float:
    ratio = hidden / width
    if int(width * ratio) != hidden:
        raise ValueError(f"{what}: MLP width {hidden} is not int({width} × ratio) for any ratio FMAE can store")
    return ratio


def take_vit_block(
    t: Tensors, src: str, dst: str, out: dict[str, torch.Tensor], fc1: str, fc2: str
) -> tuple[str, bool]:
    """Move one timm-style block (VideoMAE's, MARLIN's: ``norm1``, ``attn.qkv`` with
    ``q_bias``/``v_bias``, ``attn.proj``, ``norm2``, an MLP, optional ``gamma_1``/``gamma_2``)
    from ``src`` to FMAE's block ``dst``; returns ``(qkv_bias, has_layer_scale)``."""
    for a, b in (("norm1", "norm1"), ("norm2", "norm2"), ("attn.proj", "attn.proj"), (fc1, "mlp.0"), (fc2, "mlp.2")):
        out[f"{dst}{b}.weight"] = t.take(f"{src}{a}.weight")
        out[f"{dst}{b}.bias"] = t.take(f"{src}{a}.bias")
    out[f"{dst}attn.qkv.weight"] = t.take(f"{src}attn.qkv.weight")
    if f"{src}attn.qkv.bias" in t:
        qkv_bias = "qkv"
        out[f"{dst}attn.qkv.bias"] = t.take(f"{src}attn.qkv.bias")
    elif f"{src}attn.q_bias" in t:
        qkv_bias = "qv"
        out[f"{dst}attn.q_bias"] = t.take(f"{src}attn.q_bias")
        out[f"{dst}attn.v_bias"] = t.take(f"{src}attn.v_bias")
    else:
        qkv_bias = "none"
    scale = f"{src}gamma_1" in t
    if scale:
        out[f"{dst}gamma_1"] = t.take(f"{src}gamma_1")
        out[f"{dst}gamma_2"] = t.take(f"{src}gamma_2")
    return qkv_bias, scale


def same(values: list[Any], what: str) -> Any:
    """The one value all blocks agree on (FMAE's config has one per model)."""
    if len(set(values)) > 1:
        raise ValueError(f"{what} differs between blocks ({sorted(set(map(str, values)))}); FMAE has one per model")
    return values[0]


def pixel_stats(in_chans: int, cube_dim: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std per entry of a flattened ``(t, h, w, c)`` cube: ``[P]`` each."""
    if in_chans != 3:
        raise ValueError(f"ImageNet normalisation is for 3 channels, not {in_chans}")
    reps = cube_dim // in_chans
    return (torch.tensor(IMAGENET_MEAN, dtype=dtype).repeat(reps), torch.tensor(IMAGENET_STD, dtype=dtype).repeat(reps))


def fold_unit_input(weight: torch.Tensor, bias: torch.Tensor, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A patch embedding for [0, 1] pixels (``Linear`` weight ``[D, P]``) rewritten to take
    ImageNet-normalised ones: ``W·(n·std + mean) + b = (W·std)·n + (W·mean + b)``."""
    mean, std = pixel_stats(in_chans, weight.shape[1])
    w = weight.double()
    return (w * std).to(weight.dtype), (bias.double() + w @ mean).to(bias.dtype)


def fold_unit_output(
    weight: torch.Tensor, bias: torch.Tensor, in_chans: int, inverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pixel head predicting [0, 1] cubes (``Linear`` ``[P, Dd]``, rows in ``(t, h, w, c)``
    order) rewritten to predict ImageNet-normalised ones, ``(y - mean) / std``; with
    ``inverse`` the other way round."""
    mean, std = pixel_stats(in_chans, weight.shape[0])
    w, b = weight.double(), bias.double()
    if inverse:
        return (w * std[:, None]).to(weight.dtype), (b * std + mean).to(bias.dtype)
    return (w / std[:, None]).to(weight.dtype), ((b - mean) / std).to(bias.dtype)


def build(config: FMAEConfig, state: dict[str, torch.Tensor], has_decoder: bool, where: str) -> FMAE:
    """An FMAE model of ``config`` holding ``state`` (the encoder's tensors, and the
    decoder's when ``has_decoder``), every expected tensor present and of its shape."""
    model = FMAE(config)
    expected = model.state_dict()
    if not has_decoder:
        expected = {k: v for k, v in expected.items() if k.startswith(ENCODER_PREFIXES)}
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:  # a converter bug or an inconsistent source, never the user's input alone
        raise ValueError(
            f"{where}: the converted tensors do not match FMAE's model: missing {missing[:6]}, unexpected {extra[:6]}"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items() if v.shape != expected[k].shape
    ]
    if wrong:
        raise ValueError(f"{where}: tensor shapes do not fit the inferred sizes: {wrong[:4]}")
    model.load_state_dict(state, strict=has_decoder)
    return model.eval()
