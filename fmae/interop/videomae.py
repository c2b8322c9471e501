"""Checkpoints of the original VideoMAE and VideoMAE V2 code → FMAE.

Two layouts, found as they are or under ``model`` / ``module`` (:mod:`fmae.interop.safe_load`):

- pre-training (``modeling_pretrain.py``): ``encoder.patch_embed.proj`` (a Conv3d),
  ``encoder.blocks.N.*``, ``encoder.norm``, ``encoder_to_decoder`` (no bias),
  ``mask_token``, ``decoder.blocks.N.*``, ``decoder.norm``, ``decoder.head``;
- fine-tuned (``modeling_finetune.py``): the same encoder without the ``encoder.``
  prefix, with ``fc_norm`` (mean pooling) or ``norm``, and a classifier ``head`` (dropped).

Blocks are timm's: ``norm1``, ``attn.qkv`` with ``q_bias``/``v_bias``, ``attn.proj``,
``norm2``, ``mlp.fc1``/``fc2``, and ``gamma_1``/``gamma_2`` with layer scale. Every
LayerNorm has eps 1e-6. Position tables are sinusoidal and not saved, unless learned
(``pos_embed``). The decoder predicts cubes flattened ``(t, h, w, c)``, as FMAE does, and
inputs are ImageNet-normalised, as FMAE's. The files store neither the number of heads
nor the clip size: :class:`~fmae.interop.assemble.Overrides` or the defaults give them.
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
    fold_unit_output,
    heads_for,
    layout_tensors,
    mlp_ratio,
    same,
    take_vit_block,
)
from fmae.model import FMAEConfig

MARKERS = ("encoder.patch_embed.proj.weight", "patch_embed.proj.weight")
"""A key that only this layout has, pre-training or fine-tuned."""
EPS = 1e-6


def read_videomae(state: dict[str, torch.Tensor], path: Path, over: Overrides) -> Converted:
    """An FMAE model holding a VideoMAE / VideoMAE V2 state dict (either layout)."""
    notes: list[str] = []
    t = layout_tensors(state, path, MARKERS, "VideoMAE")
    enc = "encoder." if MARKERS[0] in t else ""
    conv = t.take(f"{enc}patch_embed.proj.weight")
    if conv.dim() != 5:
        raise ValueError(f"{path}: {enc}patch_embed.proj.weight is {tuple(conv.shape)}, not a Conv3d weight")
    dim, in_chans, *tubelet = conv.shape
    out = {"patch_embed.weight": conv3d_to_linear(conv), "patch_embed.bias": t.take(f"{enc}patch_embed.proj.bias")}
    table = t.take_opt(f"{enc}pos_embed")
    if table is not None:
        out["pos_embed"] = table.reshape(-1, dim)
        notes.append("learned position embedding (use_learnable_pos_emb)")
    img_size, num_frames = clip_size(None if table is None else out["pos_embed"].shape[0], tuple(tubelet), over, notes)

    depth = t.count(f"{enc}blocks.")
    if not depth:
        raise ValueError(f"{path}: no {enc}blocks.0.* keys (found {sorted(state)[:8]})")
    kinds = [take_vit_block(t, f"{enc}blocks.{i}.", f"blocks.{i}.", out, "mlp.fc1", "mlp.fc2") for i in range(depth)]
    qkv_bias = same([k[0] for k in kinds], "the attention bias")
    layer_scale = same([k[1] for k in kinds], "layer scale")
    if f"{enc}fc_norm.weight" in t:
        pooling, norm = "mean_fc_norm", "fc_norm"
    elif f"{enc}norm.weight" in t:
        pooling, norm = "norm_mean", "norm"
    else:
        pooling, norm = "mean", ""
        notes.append("no final norm in the file: the features are the last block's outputs")
    if norm:
        out[f"{norm}.weight"], out[f"{norm}.bias"] = t.take(f"{enc}{norm}.weight"), t.take(f"{enc}{norm}.bias")
    dropped = t.drop(f"{enc}head.")
    if dropped:
        notes.append(f"dropped the classifier ({', '.join(dropped)}): FMAE keeps the encoder")

    eps = over.layer_norm_eps or EPS
    norm_pix_loss = True if over.norm_pix_loss is None else over.norm_pix_loss
    config = dict(
        img_size=img_size,
        num_frames=num_frames,
        tubelet=tuple(tubelet),
        in_chans=in_chans,
        embed_dim=dim,
        depth=depth,
        num_heads=heads_for(dim, over.num_heads, "encoder", notes),
        mlp_ratio=mlp_ratio(dim, out["blocks.0.mlp.0.weight"].shape[0], "encoder"),
        norm_pix_loss=norm_pix_loss,
        qkv_bias=qkv_bias,
        layer_norm_eps=eps,
        norm_eps=eps,
        decoder_norm_eps=eps,
        init_values=1.0 if layer_scale else 0.0,
        pooling=pooling,
        position_embedding="learned" if table is not None else "sincos",
    )
    has_decoder = "encoder_to_decoder.weight" in t
    if has_decoder:
        config.update(_take_decoder(t, out, config, over, notes))
    t.check_all_used()
    model = build(FMAEConfig(**config), out, has_decoder, str(path))
    source = {
        "format": "videomae",
        "path": str(path),
        "layout": ("pre-training" if enc else "fine-tuned"),
        "notes": notes,
    }
    return Converted(model, has_decoder, source)


def _take_decoder(t: Tensors, out: dict[str, torch.Tensor], config: dict, over: Overrides, notes: list[str]) -> dict:
    out["decoder_embed.weight"] = proj = t.take("encoder_to_decoder.weight")
    bias = t.take_opt("encoder_to_decoder.bias")
    if bias is not None:
        out["decoder_embed.bias"] = bias
    out["mask_token"] = t.take("mask_token")
    dim = proj.shape[0]
    depth = t.count("decoder.blocks.")
    if not depth:
        raise ValueError(f"{t.where}: encoder_to_decoder without decoder.blocks.0.*")
    kinds = [
        take_vit_block(t, f"decoder.blocks.{i}.", f"decoder_blocks.{i}.", out, "mlp.fc1", "mlp.fc2")
        for i in range(depth)
    ]
    if same([k[0] for k in kinds], "the decoder's attention bias") != config["qkv_bias"]:
        raise ValueError(f"{t.where}: the encoder's and the decoder's attention biases differ; FMAE has one kind")
    layer_scale = same([k[1] for k in kinds], "the decoder's layer scale")
    if mlp_ratio(dim, out["decoder_blocks.0.mlp.0.weight"].shape[0], "decoder") != config["mlp_ratio"]:
        raise ValueError(f"{t.where}: the decoder's MLP ratio differs from the encoder's; FMAE has one")
    out["decoder_norm.weight"], out["decoder_norm.bias"] = t.take("decoder.norm.weight"), t.take("decoder.norm.bias")
    out["decoder_pred.weight"], out["decoder_pred.bias"] = t.take("decoder.head.weight"), t.take("decoder.head.bias")
    if not config["norm_pix_loss"]:
        # Without norm_pix_loss VideoMAE predicts [0, 1] pixels; FMAE's targets are the normalised clip's cubes.
        out["decoder_pred.weight"], out["decoder_pred.bias"] = fold_unit_output(
            out["decoder_pred.weight"], out["decoder_pred.bias"], config["in_chans"]
        )
        notes.append("decoder head rescaled from [0, 1] pixels to ImageNet-normalised ones (norm_pix_loss off)")
    return dict(
        decoder_embed_dim=dim,
        decoder_depth=depth,
        decoder_num_heads=heads_for(dim, over.decoder_num_heads, "decoder", notes),
        decoder_init_values=1.0 if layer_scale else 0.0,
        decoder_embed_bias=bias is not None,
    )
