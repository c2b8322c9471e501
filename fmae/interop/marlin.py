"""MARLIN checkpoints (``marlin-pytorch``, ControlNet/MARLIN) → FMAE.

The layouts that ``marlin_pytorch.Marlin.from_file`` reads: a ``.pt`` state dict of its
``Marlin`` module — ``encoder.*`` only (a feature extractor), or with ``enc_dec_proj``
(no bias) and ``decoder.*`` — or a Lightning ``.ckpt`` whose ``state_dict`` also holds
the ``discriminator.*`` of its adversarial loss (dropped here).

MARLIN's encoder is VideoMAE's with ``torch.nn.LayerNorm``'s default eps 1e-5, a
Conv3d ``patch_embedding.projection``, MLPs ``mlp.layers.0.linear`` / ``mlp.layers.1.linear``,
and position tables stored in the weights (``pos_embedding.emb``, computed in float32:
kept as they are, ``position_embedding="fixed"``). ``extract_features`` norms the tokens,
or with ``seq_mean_pool`` norms their mean (``pooling="mean_norm"``). MARLIN reads [0, 1]
pixels, not ImageNet-normalised ones, and its decoder predicts [0, 1] cubes flattened
``(c, t, h, w)``; with ``input_norm="imagenet"`` both scalings are folded into the
weights, so the converted model takes FMAE's clips and predicts FMAE's targets.
The files store neither the number of heads (width / 64 unless given) nor the clip
size (from the position table, with 16 frames unless given).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fmae.interop.assemble import (
    Converted,
    Overrides,
    Tensors,
    build,
    clip_size,
    conv3d_to_linear,
    fold_unit_input,
    fold_unit_output,
    heads_for,
    layout_tensors,
    mlp_ratio,
    same,
    take_vit_block,
)
from fmae.model import FMAEConfig

MARKERS = ("encoder.patch_embedding.projection.weight", "patch_embedding.projection.weight")
EPS = 1e-5
_FC1, _FC2 = "mlp.layers.0.linear", "mlp.layers.1.linear"


def cthw_to_thwc(tensor: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Reorder the first dimension of a pixel head's weight or bias from MARLIN's
    ``(c, t, h, w)`` flattening to FMAE's ``(t, h, w, c)``."""
    rest = tensor.shape[1:]
    return tensor.reshape(in_chans, -1, *rest).transpose(0, 1).reshape(tensor.shape)


def read_marlin(state: dict[str, torch.Tensor], path: Path, over: Overrides) -> Converted:
    """An FMAE model holding a MARLIN state dict."""
    notes: list[str] = []
    t = layout_tensors(state, path, MARKERS, "MARLIN")
    enc = "encoder." if MARKERS[0] in t else ""
    dropped = t.drop("discriminator.")
    if dropped:
        notes.append(f"dropped MARLIN's discriminator ({len(dropped)} tensors)")
    conv = t.take(f"{enc}patch_embedding.projection.weight")
    if conv.dim() != 5:
        raise ValueError(f"{path}: {enc}patch_embedding.projection.weight is {tuple(conv.shape)}, not a Conv3d weight")
    dim, in_chans, *tubelet = conv.shape
    weight, bias = conv3d_to_linear(conv), t.take(f"{enc}patch_embedding.projection.bias")
    if over.input_norm == "imagenet":
        weight, bias = fold_unit_input(weight, bias, in_chans)
        notes.append(
            "MARLIN's [0, 1] pixel input folded into the patch embedding: the model takes "
            "ImageNet-normalised clips, as FMAE's loaders give"
        )
    out = {
        "patch_embed.weight": weight,
        "patch_embed.bias": bias,
        "pos_embed": t.take(f"{enc}pos_embedding.emb").reshape(-1, dim),
    }
    img_size, num_frames = clip_size(out["pos_embed"].shape[0], tuple(tubelet), over, notes)
    depth = t.count(f"{enc}blocks.")
    if not depth:
        raise ValueError(f"{path}: no {enc}blocks.0.* keys (found {sorted(state)[:8]})")
    kinds = [take_vit_block(t, f"{enc}blocks.{i}.", f"blocks.{i}.", out, _FC1, _FC2) for i in range(depth)]
    out["norm.weight"], out["norm.bias"] = t.take(f"{enc}norm.weight"), t.take(f"{enc}norm.bias")
    eps = over.layer_norm_eps or EPS
    config = dict(
        img_size=img_size,
        num_frames=num_frames,
        tubelet=tuple(tubelet),
        in_chans=in_chans,
        embed_dim=dim,
        depth=depth,
        num_heads=heads_for(dim, over.num_heads, "encoder", notes),
        mlp_ratio=mlp_ratio(dim, out["blocks.0.mlp.0.weight"].shape[0], "encoder"),
        norm_pix_loss=bool(over.norm_pix_loss),
        qkv_bias=same([k[0] for k in kinds], "the attention bias"),
        layer_norm_eps=eps,
        norm_eps=eps,
        decoder_norm_eps=eps,
        init_values=1.0 if same([k[1] for k in kinds], "layer scale") else 0.0,
        pooling="mean_norm",
        position_embedding="fixed",
        decoder_embed_bias=False,
    )
    has_decoder = bool(enc) and t.has_prefix("decoder.")
    if has_decoder:
        config.update(_take_decoder(t, out, config, over, notes))
    t.check_all_used()
    model = build(FMAEConfig(**config), out, has_decoder, str(path))
    source = {
        "format": "marlin",
        "path": str(path),
        "layout": ("full" if has_decoder else "encoder"),
        "input_norm": over.input_norm,
        "notes": notes,
    }
    return Converted(model, has_decoder, source)


def _take_decoder(t: Tensors, out: dict[str, torch.Tensor], config: dict, over: Overrides, notes: list[str]) -> dict:
    out["decoder_embed.weight"] = proj = t.take("enc_dec_proj.weight")
    out["mask_token"] = t.take("decoder.mask_token")
    dim = proj.shape[0]
    table = t.take("decoder.pos_embedding.emb").reshape(-1, dim)
    if table.shape[0] != out["pos_embed"].shape[0]:
        raise ValueError(
            f"{t.where}: the decoder's position table has {table.shape[0]} rows, the encoder's "
            f"{out['pos_embed'].shape[0]}; MARLIN itself could not run them together"
        )
    out["decoder_pos_embed"] = table
    depth = t.count("decoder.blocks.")
    kinds = [take_vit_block(t, f"decoder.blocks.{i}.", f"decoder_blocks.{i}.", out, _FC1, _FC2) for i in range(depth)]
    if not depth or same([k[0] for k in kinds], "the decoder's attention bias") != config["qkv_bias"]:
        raise ValueError(f"{t.where}: no decoder blocks, or their attention biases differ from the encoder's")
    if mlp_ratio(dim, out["decoder_blocks.0.mlp.0.weight"].shape[0], "decoder") != config["mlp_ratio"]:
        raise ValueError(f"{t.where}: the decoder's MLP ratio differs from the encoder's; FMAE has one")
    out["decoder_norm.weight"], out["decoder_norm.bias"] = t.take("decoder.norm.weight"), t.take("decoder.norm.bias")
    weight = cthw_to_thwc(t.take("decoder.head.weight"), config["in_chans"])
    bias = cthw_to_thwc(t.take("decoder.head.bias"), config["in_chans"])
    if over.input_norm == "imagenet" and not config["norm_pix_loss"]:
        weight, bias = fold_unit_output(weight, bias, config["in_chans"])
        notes.append("decoder head rescaled from [0, 1] pixels to ImageNet-normalised ones")
    out["decoder_pred.weight"], out["decoder_pred.bias"] = weight, bias
    return dict(
        decoder_embed_dim=dim,
        decoder_depth=depth,
        decoder_num_heads=heads_for(dim, over.decoder_num_heads, "decoder", notes),
        decoder_init_values=1.0 if same([k[1] for k in kinds], "the decoder's layer scale") else 0.0,
    )
