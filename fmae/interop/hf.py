"""Hugging Face ``transformers`` VideoMAE folders ↔ FMAE.

A folder written by ``save_pretrained`` holds ``config.json`` and ``model.safetensors``
(or ``pytorch_model.bin``, or shards with an index). Its keys, for ``VideoMAEModel``:
``embeddings.patch_embeddings.projection`` (a Conv3d), ``encoder.layer.N.{layernorm_before,
attention.attention.{query,key,value}, attention.output.dense, layernorm_after,
intermediate.dense, output.dense}`` and, without ``use_mean_pooling``, ``layernorm``.
``VideoMAEForPreTraining`` nests them under ``videomae.`` beside ``encoder_to_decoder``
(no bias), ``mask_token`` and ``decoder.{decoder_layers.N.*, norm, head}``;
``VideoMAEForVideoClassification`` beside ``fc_norm`` and ``classifier``. Folders saved
by transformers 4 name the q/v biases ``q_bias``/``v_bias``; both are read.

What HF computes, and FMAE reproduces: the key has no bias (``qkv_bias="qv"``, or
``"none"`` without ``qv_bias``); block LayerNorms and ``layernorm`` use
``layer_norm_eps``, ``fc_norm`` and the decoder's ``norm`` torch's default 1e-5; position
tables are sinusoidal; pixels are ImageNet-normalised; the decoder predicts cubes
flattened ``(t, h, w, c)``, normalised per cube with ``norm_pix_loss``, else [0, 1] pixels.

:func:`write_hf` goes the other way with ``transformers`` itself, so what it writes is
what ``from_pretrained`` expects. Settings HF has no field for (MARLIN's pooling) travel
in ``config.json`` as ``fmae_config`` and come back on reading: what the weights and HF's
own fields determine is taken from them, the rest (MARLIN's pooling, an absent decoder's
settings, FMAE's backends) from ``fmae_config``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmae.interop.assemble import (
    Converted,
    Overrides,
    Tensors,
    build,
    conv3d_to_linear,
    describe_keys,
    fold_unit_output,
    linear_to_conv3d,
    mlp_ratio,
    same,
)
from fmae.interop.safe_load import load_tensor_file
from fmae.model import FMAE, FMAEConfig, sinusoid_table

_FMAE_FIELDS = {f.name for f in dataclasses.fields(FMAEConfig)}

HF_NORM_EPS = 1e-5
"""Epsilon of HF's ``fc_norm`` and decoder ``norm`` (``torch.nn.LayerNorm``'s default)."""
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_DECODER_ONLY = ("decoder_norm_eps", "decoder_init_values", "decoder_embed_bias")


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _load_hf_state(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            state = load_tensor_file(folder / name)
            if not isinstance(state, dict):
                raise ValueError(f"{folder / name} does not hold a dict of tensors")
            return state, name
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(load_tensor_file(folder / shard))
            return state, index.name
    raise FileNotFoundError(
        f"{folder} has config.json but no weights ({' or '.join(_WEIGHT_FILES)}, or their .index.json shards)"
    )


def _take_layer(t: Tensors, src: str, dst: str, out: dict[str, torch.Tensor]) -> str:
    """One ``VideoMAELayer`` into an FMAE block; returns its ``qkv_bias`` kind."""
    for a, b in (
        ("layernorm_before", "norm1"),
        ("layernorm_after", "norm2"),
        ("attention.output.dense", "attn.proj"),
        ("intermediate.dense", "mlp.0"),
        ("output.dense", "mlp.2"),
    ):
        out[f"{dst}{b}.weight"], out[f"{dst}{b}.bias"] = t.take(f"{src}{a}.weight"), t.take(f"{src}{a}.bias")
    attn = f"{src}attention.attention."
    out[f"{dst}attn.qkv.weight"] = torch.cat([t.take(f"{attn}{n}.weight") for n in ("query", "key", "value")])
    q_bias = t.take_opt(f"{attn}query.bias")
    q_bias = t.take_opt(f"{attn}q_bias") if q_bias is None else q_bias
    v_bias = t.take_opt(f"{attn}value.bias")
    v_bias = t.take_opt(f"{attn}v_bias") if v_bias is None else v_bias
    if (q_bias is None) != (v_bias is None):
        raise ValueError(f"{t.where}: {attn} has a bias on only one of query and value")
    if q_bias is None:
        return "none"
    out[f"{dst}attn.q_bias"], out[f"{dst}attn.v_bias"] = q_bias, v_bias
    return "qv"


def _size(value: Any, what: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"FMAE needs a square {what}, got {value}")
        value = value[0]
    return int(value)


def read_hf(folder: Path, over: Overrides) -> Converted:
    """An FMAE model holding a ``transformers`` VideoMAE folder's weights."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except ValueError as err:
        raise ValueError(f"{folder / 'config.json'} is not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"{folder / 'config.json'} holds {json.dumps(cfg)[:40]}, not a JSON object of settings")
    if cfg.get("model_type") != "videomae":
        raise ValueError(f"{folder} holds a Hugging Face {cfg.get('model_type')!r} model; FMAE converts 'videomae'")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{folder}: hidden_act {cfg['hidden_act']!r}; FMAE's MLPs use exact GELU ('gelu')")
    state, weights_file = _load_hf_state(folder)
    notes: list[str] = []
    t = Tensors(state, str(folder / weights_file))
    e = "videomae." if "videomae.embeddings.patch_embeddings.projection.weight" in t else ""
    conv = t.take(f"{e}embeddings.patch_embeddings.projection.weight")
    dim, in_chans, *tubelet = conv.shape
    out = {
        "patch_embed.weight": conv3d_to_linear(conv),
        "patch_embed.bias": t.take(f"{e}embeddings.patch_embeddings.projection.bias"),
    }
    depth = t.count(f"{e}encoder.layer.")
    if not depth:
        raise ValueError(f"{t.where}: no {e}encoder.layer.0.* keys (found {describe_keys(state)})")
    qkv_bias = same(
        [_take_layer(t, f"{e}encoder.layer.{i}.", f"blocks.{i}.", out) for i in range(depth)], "the attention bias"
    )
    eps = over.layer_norm_eps or float(cfg.get("layer_norm_eps", 1e-12))
    # What FMAE wrote (write_hf), for the settings that neither HF's config nor the weights determine.
    carried = cfg.get("fmae_config") if isinstance(cfg.get("fmae_config"), dict) else {}
    carried = {k: v for k, v in carried.items() if k in _FMAE_FIELDS}
    config = {
        k: carried[k]
        for k in ("backend", "attention_backend", "disc_dim", "disc_depth", "norm_eps", *_DECODER_ONLY)
        if k in carried
    }
    if f"{e}layernorm.weight" in t:
        config["pooling"] = "mean_norm" if carried.get("pooling") == "mean_norm" else "norm_mean"
        config["norm_eps"] = eps
        out["norm.weight"], out["norm.bias"] = t.take(f"{e}layernorm.weight"), t.take(f"{e}layernorm.bias")
    elif "fc_norm.weight" in t:
        config["pooling"], config["norm_eps"] = "mean_fc_norm", HF_NORM_EPS
        out["fc_norm.weight"], out["fc_norm.bias"] = t.take("fc_norm.weight"), t.take("fc_norm.bias")
    else:
        config["pooling"] = "mean"  # no final norm: its epsilon is moot
    dropped = t.drop("classifier.")
    if dropped:
        notes.append(f"dropped the classifier ({', '.join(dropped)}): FMAE keeps the encoder")
        if config["pooling"] != "mean_fc_norm":
            notes.append("HF's classifier reads the first token (use_mean_pooling off); FMAE pools the mean")
    norm_pix_loss = bool(cfg.get("norm_pix_loss", True)) if over.norm_pix_loss is None else over.norm_pix_loss
    ratio = mlp_ratio(dim, out["blocks.0.mlp.0.weight"].shape[0], "encoder")
    config.update(
        img_size=over.img_size or _size(cfg.get("image_size", 224), "image_size"),
        num_frames=over.num_frames or int(cfg.get("num_frames", 16)),
        tubelet=tuple(tubelet),
        in_chans=in_chans,
        embed_dim=dim,
        depth=depth,
        num_heads=over.num_heads or int(cfg.get("num_attention_heads", 12)),
        mlp_ratio=ratio,
        norm_pix_loss=norm_pix_loss,
        qkv_bias=qkv_bias,
        layer_norm_eps=eps,
        # The decoder's sizes are in HF's config even without its weights.
        decoder_embed_dim=int(cfg.get("decoder_hidden_size", 384)),
        decoder_depth=int(cfg.get("decoder_num_hidden_layers", 4)),
        decoder_num_heads=over.decoder_num_heads or int(cfg.get("decoder_num_attention_heads", 6)),
    )
    has_decoder = "encoder_to_decoder.weight" in t
    if has_decoder:
        config.update(decoder_norm_eps=HF_NORM_EPS, decoder_init_values=0.0, decoder_embed_bias=False)
        config.update(_take_decoder(t, out, config, cfg, over, notes))
    t.check_all_used()
    model = build(FMAEConfig(**config), out, has_decoder, str(folder))
    kind = "VideoMAEForPreTraining" if has_decoder else "VideoMAEForVideoClassification" if e else "VideoMAEModel"
    return Converted(model, has_decoder, {"format": "hf", "path": str(folder), "layout": kind, "notes": notes})


def _take_decoder(
    t: Tensors, out: dict[str, torch.Tensor], config: dict, cfg: dict, over: Overrides, notes: list[str]
) -> dict:
    out["decoder_embed.weight"] = proj = t.take("encoder_to_decoder.weight")
    out["mask_token"] = t.take("mask_token")
    dim = proj.shape[0]
    depth = t.count("decoder.decoder_layers.")
    kinds = [_take_layer(t, f"decoder.decoder_layers.{i}.", f"decoder_blocks.{i}.", out) for i in range(depth)]
    if not depth or same(kinds, "the decoder's attention bias") != config["qkv_bias"]:
        raise ValueError(f"{t.where}: no decoder layers, or their attention biases differ from the encoder's")
    if mlp_ratio(dim, out["decoder_blocks.0.mlp.0.weight"].shape[0], "decoder") != config["mlp_ratio"]:
        raise ValueError(
            f"{t.where}: decoder_intermediate_size / decoder_hidden_size differs from the encoder's "
            f"MLP ratio; FMAE has one"
        )
    out["decoder_norm.weight"], out["decoder_norm.bias"] = t.take("decoder.norm.weight"), t.take("decoder.norm.bias")
    weight, bias = t.take("decoder.head.weight"), t.take("decoder.head.bias")
    if not config["norm_pix_loss"] and config["in_chans"] == 3:
        weight, bias = fold_unit_output(weight, bias, 3)
        notes.append("decoder head rescaled from [0, 1] pixels to ImageNet-normalised ones (norm_pix_loss off)")
    out["decoder_pred.weight"], out["decoder_pred.bias"] = weight, bias
    return dict(
        decoder_embed_dim=dim,
        decoder_depth=depth,
        decoder_num_heads=over.decoder_num_heads or int(cfg.get("decoder_num_attention_heads", 6)),
    )


def _put_block(block: torch.nn.Module, dst: str, out: dict[str, torch.Tensor], notes: list[str], what: str) -> None:
    """An FMAE block as a ``VideoMAELayer``: q/k/v split (a key bias, which attention
    ignores, dropped) and layer scale folded into the output projections."""
    attn, mlp = block.attn, block.mlp
    dim = attn.proj.weight.shape[0]
    for a, m in (("layernorm_before", block.norm1), ("layernorm_after", block.norm2)):
        out[f"{dst}{a}.weight"], out[f"{dst}{a}.bias"] = m.weight, m.bias
    for i, name in enumerate(("query", "key", "value")):
        out[f"{dst}attention.attention.{name}.weight"] = attn.qkv.weight[i * dim : (i + 1) * dim]
    if attn.q_bias is not None:
        out[f"{dst}attention.attention.query.bias"] = attn.q_bias
        out[f"{dst}attention.attention.value.bias"] = attn.v_bias
    elif attn.qkv.bias is not None:
        bias = attn.qkv.bias
        out[f"{dst}attention.attention.query.bias"] = bias[:dim]
        out[f"{dst}attention.attention.value.bias"] = bias[2 * dim :]
        if bias[dim : 2 * dim].any() and what not in notes:
            notes.append(what)
    for name, linear, gamma in (
        ("attention.output.dense", attn.proj, block.gamma_1),
        ("intermediate.dense", mlp[0], None),
        ("output.dense", mlp[2], block.gamma_2),
    ):
        weight, bias = linear.weight, linear.bias
        if gamma is not None:
            weight = (weight.double() * gamma.double()[:, None]).float()
            bias = (bias.double() * gamma.double()).float()
        out[f"{dst}{name}.weight"], out[f"{dst}{name}.bias"] = weight, bias


@dataclass(frozen=True)
class _HFLayout:
    """What :func:`write_hf` writes: the HF class, its key prefix and which optional parts it holds."""

    cls_name: str
    prefix: str
    with_decoder: bool
    classify: bool
    mean_pooling: bool


_KEY_NOTE = "the attention's key bias dropped (a shift of every score that the softmax ignores)"


def _import_transformers():
    """The ``transformers`` module, or a ``ValueError`` saying how to install it."""
    try:
        import transformers
    except ImportError as err:
        raise ValueError("writing a Hugging Face folder needs transformers: pip install transformers") from err
    return transformers


def _clear_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that is not an empty folder, or remove it with ``overwrite``."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not an empty folder (--overwrite to replace it)")
        shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()


def _check_patches_and_positions(model: FMAE, notes: list[str]) -> None:
    """Refuse what HF cannot hold (non-square patches, a learned or non-sinusoidal position table)."""
    c = model.config
    _, th, tw = c.tubelet
    if th != tw:
        raise ValueError(f"HF VideoMAE needs square patches; this model's tubelet is {c.tubelet}")
    if c.position_embedding == "learned":
        raise ValueError("this model has a learned position table; HF VideoMAE only has fixed sinusoidal ones")
    if c.position_embedding == "sincos_thw":
        raise ValueError(
            "this model has one sin/cos position table per axis (sincos_thw, fmae.train's default since "
            "2026-12-07); HF VideoMAE only has the 1-D one: pre-train with --position-embedding sincos to export"
        )
    if c.position_embedding == "fixed":
        tables = ((model.pos_embed, c.embed_dim), (model.decoder_pos_embed, c.decoder_embed_dim))
        diff = max(float((tab.float().cpu() - sinusoid_table(c.num_tokens, d)).abs().max()) for tab, d in tables)
        if diff > 1e-3:
            raise ValueError(
                f"this model's stored position tables differ from sinusoidal ones by {diff:.3g}; "
                f"HF VideoMAE recomputes them"
            )
        notes.append(
            f"approximate: HF recomputes the position tables in float64 (the stored ones differ by {diff:.2g})"
        )


def _choose_layout(model: FMAE, with_decoder: bool, notes: list[str]) -> _HFLayout:
    """Pick the HF class and its parts, noting what HF approximates or leaves out."""
    c = model.config
    if with_decoder and c.decoder_embed_bias and model.decoder_embed.bias.detach().any():
        with_decoder = False
        notes.append("decoder left out: its decoder_embed has a bias, HF's encoder_to_decoder has none")
    if with_decoder and c.decoder_hint != "none":
        with_decoder = False
        notes.append(f"decoder left out: it is given a {c.decoder_hint} hint, which HF's decoder has no place for")
    if with_decoder and c.decoder_mean_cube:
        with_decoder = False
        notes.append("decoder left out: it adds a learned mean cube per position, which HF's decoder has no place for")
    mean_pooling = c.pooling in ("mean", "mean_fc_norm")
    if c.pooling in ("norm_mean", "mean_norm") and c.norm_eps != c.layer_norm_eps:
        notes.append(f"approximate: HF's final layernorm uses layer_norm_eps {c.layer_norm_eps:g}, not {c.norm_eps:g}")
    if c.pooling == "mean_fc_norm" and c.norm_eps != HF_NORM_EPS:
        notes.append(f"approximate: HF's fc_norm has eps {HF_NORM_EPS:g}, not {c.norm_eps:g}")
    if c.pooling == "mean_norm":
        notes.append(
            "HF's VideoMAEModel returns the tokens only; the pooling (norm of the mean) is kept in "
            "config.json's fmae_config for FMAE"
        )
    if with_decoder and c.decoder_norm_eps != HF_NORM_EPS:
        notes.append(f"approximate: HF's decoder norm has eps {HF_NORM_EPS:g}, not {c.decoder_norm_eps:g}")
    classify = c.pooling == "mean_fc_norm" and not with_decoder
    if c.pooling == "mean_fc_norm" and with_decoder:
        notes.append("fc_norm left out: VideoMAEForPreTraining has no place for it")
    cls_name = (
        "VideoMAEForPreTraining" if with_decoder else "VideoMAEForVideoClassification" if classify else "VideoMAEModel"
    )
    prefix = "" if cls_name == "VideoMAEModel" else "videomae."
    return _HFLayout(cls_name, prefix, with_decoder, classify, mean_pooling)


def _hf_state(model: FMAE, layout: _HFLayout, notes: list[str]) -> dict[str, torch.Tensor]:
    """The model's tensors under HF's keys: embedding, encoder, final norm and, if written, the decoder."""
    c, e = model.config, layout.prefix
    out: dict[str, torch.Tensor] = {
        f"{e}embeddings.patch_embeddings.projection.weight": linear_to_conv3d(
            model.patch_embed.weight, c.tubelet, c.in_chans
        ),
        f"{e}embeddings.patch_embeddings.projection.bias": model.patch_embed.bias,
    }
    for i, block in enumerate(model.blocks):
        _put_block(block, f"{e}encoder.layer.{i}.", out, notes, _KEY_NOTE)
    if c.pooling in ("norm_mean", "mean_norm"):
        out[f"{e}layernorm.weight"], out[f"{e}layernorm.bias"] = model.norm.weight, model.norm.bias
    if layout.classify:
        out["fc_norm.weight"], out["fc_norm.bias"] = model.fc_norm.weight, model.fc_norm.bias
    if any(b.gamma_1 is not None for b in [*model.blocks, *(model.decoder_blocks if layout.with_decoder else [])]):
        notes.append("layer scale folded into the output projections")
    if layout.with_decoder:
        _put_decoder(model, out, notes)
    return out


def _put_decoder(model: FMAE, out: dict[str, torch.Tensor], notes: list[str]) -> None:
    """The decoder as ``VideoMAEForPreTraining``'s, its pixel head rescaled to HF's targets where needed."""
    c = model.config
    out["encoder_to_decoder.weight"], out["mask_token"] = model.decoder_embed.weight, model.mask_token
    for i, block in enumerate(model.decoder_blocks):
        _put_block(block, f"decoder.decoder_layers.{i}.", out, notes, _KEY_NOTE)
    out["decoder.norm.weight"], out["decoder.norm.bias"] = model.decoder_norm.weight, model.decoder_norm.bias
    weight, bias = model.decoder_pred.weight, model.decoder_pred.bias
    if not c.norm_pix_loss and c.in_chans == 3:
        weight, bias = fold_unit_output(weight, bias, 3, inverse=True)
        notes.append("decoder head rescaled to [0, 1] pixels, HF's targets without norm_pix_loss")
    out["decoder.head.weight"], out["decoder.head.bias"] = weight, bias


def _hf_config(transformers, c: FMAEConfig, layout: _HFLayout):
    """The ``transformers.VideoMAEConfig`` of the model, with its FMAE config carried as ``fmae_config``."""
    tt, th, _ = c.tubelet
    return transformers.VideoMAEConfig(
        image_size=c.img_size,
        patch_size=th,
        num_channels=c.in_chans,
        num_frames=c.num_frames,
        tubelet_size=tt,
        hidden_size=c.embed_dim,
        num_hidden_layers=c.depth,
        num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio),
        hidden_act="gelu",
        layer_norm_eps=c.layer_norm_eps,
        qkv_bias=c.qkv_bias != "none",
        use_mean_pooling=layout.mean_pooling,
        norm_pix_loss=c.norm_pix_loss,
        decoder_num_attention_heads=c.decoder_num_heads,
        decoder_hidden_size=c.decoder_embed_dim,
        decoder_num_hidden_layers=c.decoder_depth,
        decoder_intermediate_size=int(c.decoder_embed_dim * c.mlp_ratio),
        fmae_config=c.to_dict(),
        **({"num_labels": 0} if layout.classify else {}),
    )


def _save_hf(transformers, cls_name: str, hf_config, out: dict[str, torch.Tensor], out_dir: Path) -> None:
    """Load ``out`` strictly into a new HF model of ``cls_name`` and save it to ``out_dir``."""
    hf_model = getattr(transformers, cls_name)(hf_config)
    expected = hf_model.state_dict()
    if any(k.endswith(".q_bias") for k in expected):  # transformers 4 names
        out = {k.replace("query.bias", "q_bias").replace("value.bias", "v_bias"): v for k, v in out.items()}
    missing, extra = sorted(set(expected) - set(out)), sorted(set(out) - set(expected))
    if missing or extra:
        raise RuntimeError(f"FMAE → {cls_name}: missing {describe_keys(missing)}, unexpected {describe_keys(extra)}")
    hf_model.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in out.items()}, strict=True)
    hf_model.save_pretrained(out_dir)


def write_hf(model: FMAE, out_dir: str | Path, with_decoder: bool, overwrite: bool = False) -> tuple[str, list[str]]:
    """Write ``model`` as a ``transformers`` VideoMAE folder; returns ``(class name, notes)``.

    The class is ``VideoMAEForPreTraining`` with the decoder, else ``VideoMAEModel`` — or
    ``VideoMAEForVideoClassification`` without labels (its logits are the pooled
    features) for ``pooling="mean_fc_norm"``, whose ``fc_norm`` ``VideoMAEModel`` has no
    place for. Exact in arithmetic, not bitwise, where HF needs the weights rewritten
    (a key bias dropped, layer scale folded, a pixel head rescaled); settings HF cannot
    hold are refused (a learned position table) or noted (other LayerNorm epsilons, a
    decoder embedding with a bias, which leaves the decoder out).
    """
    transformers = _import_transformers()
    out_dir = Path(out_dir)
    _clear_out_dir(out_dir, overwrite)
    notes: list[str] = []
    _check_patches_and_positions(model, notes)
    layout = _choose_layout(model, with_decoder, notes)
    out = _hf_state(model, layout, notes)
    _save_hf(transformers, layout.cls_name, _hf_config(transformers, model.config, layout), out, out_dir)
    return layout.cls_name, notes
