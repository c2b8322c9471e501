"""Checkpoints in the original VideoMAE / VideoMAE V2 key layout → FMAE.

The test writes the checkpoints itself, from a ``transformers`` VideoMAE model with the
original code's settings (every LayerNorm at eps 1e-6) renamed to the original keys
(``encoder.blocks.N.attn.q_bias``, ``mlp.fc1``, …, as ``modeling_pretrain.py`` and
``modeling_finetune.py`` name them), and compares FMAE on the converted file with
that model; layer scale is checked against VideoMAE's ``Block`` as marlin-pytorch ships it.
"""

import argparse
import importlib
import importlib.util
import re
import sys
import types
from functools import partial
from pathlib import Path

import pytest
import torch

from fmae.interop import Overrides, read_source
from fmae.model import sinusoid_table

transformers = pytest.importorskip("transformers")

SIZE = dict(
    image_size=32,
    patch_size=16,
    num_frames=4,
    tubelet_size=2,
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=512,
    layer_norm_eps=1e-6,
    decoder_hidden_size=64,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=1,
    decoder_intermediate_size=256,
)
SIZES = {
    "128w": SIZE,
    "192w-1x8": dict(
        SIZE,
        hidden_size=192,
        num_attention_heads=3,
        intermediate_size=768,
        patch_size=8,
        tubelet_size=1,
        num_frames=2,
        decoder_hidden_size=128,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=512,
    ),
}
FLAGS = dict(img_size=32, num_frames=4)


def perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return module.eval()


def check(ours, theirs, rel=1e-4):
    err, scale = float((ours - theirs).abs().max()), float(theirs.abs().mean())
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel} × mean |output| {scale:.3g}"


_NAMES = [
    ("embeddings.patch_embeddings.projection", "patch_embed.proj"),
    ("encoder.layer.", "blocks."),
    ("decoder.decoder_layers.", "decoder.blocks."),
    ("layernorm_before", "norm1"),
    ("layernorm_after", "norm2"),
    ("attention.output.dense", "attn.proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
    ("attention.attention.query.bias", "attn.q_bias"),
    ("attention.attention.value.bias", "attn.v_bias"),
]


def original_layout(hf_state, encoder_prefix):
    """An HF VideoMAE state dict renamed to the original code's keys (q, k, v fused into ``attn.qkv``)."""
    out = {}
    for key, value in hf_state.items():
        key = key.removeprefix("videomae.")
        for a, b in _NAMES:
            key = key.replace(a, b)
        if key == "layernorm.weight" or key == "layernorm.bias":
            key = key.replace("layernorm", "norm")
        if key.startswith(("patch_embed", "blocks.", "norm.")):
            key = encoder_prefix + key
        key = key.replace("classifier.", "head.")
        out[key] = value
    for key in [k for k in out if k.endswith("attention.attention.query.weight")]:
        stem = key[: -len("attention.attention.query.weight")]
        out[stem + "attn.qkv.weight"] = torch.cat(
            [out.pop(f"{stem}attention.attention.{n}.weight") for n in ("query", "key", "value")]
        )
    return out


def hf_input(clip):
    return clip.transpose(1, 2)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_pretraining_checkpoint(name, tmp_path):
    size = SIZES[name]
    torch.manual_seed(0)
    hf = perturb(transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**size, use_mean_pooling=False)))
    hf.decoder.norm.eps = 1e-6  # the original decoder's norm, like all its norms
    state = original_layout(hf.state_dict(), "encoder.")
    assert "encoder.blocks.0.attn.q_bias" in state and "encoder_to_decoder.weight" in state
    # As the original training code saves it: under "model", beside its argparse arguments and more.
    path = tmp_path / "checkpoint-799.pth"
    torch.save(
        {
            "model": state,
            "args": argparse.Namespace(model="pretrain_videomae_base_patch16_224", lr=1.5e-4),
            "epoch": 799,
            "scaler": {"scale": 65536.0},
        },
        path,
    )
    over = Overrides(
        num_heads=size["num_attention_heads"],
        decoder_num_heads=size["decoder_num_attention_heads"],
        img_size=size["image_size"],
        num_frames=size["num_frames"],
    )
    converted = read_source(path, overrides=over)
    assert converted.source["format"] == "videomae" and converted.source["found_under"] == "model"
    assert converted.has_decoder and converted.model.config.norm_pix_loss  # VideoMAE's default targets
    c = converted.model.config
    assert (c.qkv_bias, c.layer_norm_eps, c.norm_eps, c.decoder_norm_eps) == ("qv", 1e-6, 1e-6, 1e-6)
    g = torch.Generator().manual_seed(1)
    clip = torch.randn(2, 3, size["num_frames"], 32, 32, generator=g)
    mask = torch.rand(2, c.num_tokens, generator=g).argsort(1) < c.num_tokens // 2
    with torch.no_grad():
        check(converted.model.forward_features(clip, pool=False), hf.videomae(hf_input(clip)).last_hidden_state)
        out, ours = hf(hf_input(clip), bool_masked_pos=mask), converted.model(clip, mask)
        check(ours.pred, out.logits)
        check(((ours.pred - ours.target) ** 2).mean(), out.loss)


def test_finetuned_checkpoint_with_learned_positions(tmp_path):
    torch.manual_seed(1)
    hf = perturb(transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**SIZE, num_labels=5)))
    hf.fc_norm.eps = 1e-6
    state = original_layout(hf.state_dict(), "")
    assert {"fc_norm.weight", "head.weight", "patch_embed.proj.weight"} <= set(state)
    table = sinusoid_table(8, SIZE["hidden_size"]) + 0.1 * torch.randn(8, SIZE["hidden_size"])
    state["pos_embed"] = table[None]  # use_learnable_pos_emb
    hf.videomae.embeddings.position_embeddings = table[None]
    torch.save({"module": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ft.pt")  # DDP, under "module"
    # The clip size comes from the learned table: 8 tokens are 16 frames of 16² (the default frame count), or
    # 4 frames of 32²; 6 frames fit no square.
    assert read_source(tmp_path / "ft.pt", overrides=Overrides(num_heads=2)).model.config.img_size == 16
    with pytest.raises(ValueError, match="does not fit"):
        read_source(tmp_path / "ft.pt", overrides=Overrides(num_heads=2, num_frames=6))
    converted = read_source(tmp_path / "ft.pt", overrides=Overrides(num_heads=2, num_frames=4))
    c = converted.model.config
    assert (c.pooling, c.position_embedding, c.img_size) == ("mean_fc_norm", "learned", 32)
    assert not converted.has_decoder
    assert any("head" in note for note in converted.source["notes"])
    fed = []
    hf.classifier.register_forward_hook(lambda module, args, out: fed.append(args[0]))
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        hf(hf_input(clip))
        check(converted.model.forward_features(clip), fed[0])


def test_sizes_not_in_the_file_are_inferred_and_noted(tmp_path):
    torch.manual_seed(2)
    hf = perturb(transformers.VideoMAEModel(transformers.VideoMAEConfig(**dict(SIZE, hidden_size=128))))
    torch.save(original_layout(hf.state_dict(), ""), tmp_path / "enc.pth")
    converted = read_source(tmp_path / "enc.pth")
    c = converted.model.config
    assert (c.num_heads, c.img_size, c.num_frames, c.pooling) == (2, 224, 16, "mean")  # width / 64; VideoMAE's clip
    notes = " ".join(converted.source["notes"])
    assert "inferred" in notes and "assumed" in notes and "no final norm" in notes


def _videomae_block_module():
    # VideoMAE's Block (timm's, with q_bias/v_bias and gamma_1/gamma_2), as marlin-pytorch copies it.
    pytest.importorskip("einops")
    spec = importlib.util.find_spec("marlin_pytorch")
    if spec is None:
        pytest.skip("marlin-pytorch is not installed (pip install --no-deps marlin-pytorch einops)")
    if "_marlin_model" not in sys.modules:
        package = types.ModuleType("_marlin_model")  # its model modules, without the package's __init__
        package.__path__ = [str(Path(spec.origin).parent / "model")]
        sys.modules["_marlin_model"] = package
    return importlib.import_module("_marlin_model.modules")


def test_layer_scale_checkpoint(tmp_path):
    # VideoMAE V2 style: blocks with layer scale (gamma_1, gamma_2), no decoder.
    modules = _videomae_block_module()
    torch.manual_seed(3)
    dim, heads, depth = 96, 3, 2
    norm = partial(torch.nn.LayerNorm, eps=1e-6)
    blocks = torch.nn.ModuleList(
        modules.Block(dim, heads, qkv_bias=True, init_values=0.1, norm_layer=norm) for _ in range(depth)
    )
    proj, final = torch.nn.Conv3d(3, dim, (2, 16, 16), (2, 16, 16)), norm(dim)
    for m in (blocks, proj, final):
        perturb(m)
    state = {f"encoder.patch_embed.proj.{k}": v for k, v in proj.state_dict().items()}
    for i, block in enumerate(blocks):
        for k, v in block.state_dict().items():
            k = re.sub(r"mlp\.layers\.(\d)\.linear", lambda m: f"mlp.fc{int(m.group(1)) + 1}", k)
            state[f"encoder.blocks.{i}.{k}"] = v
    state.update({f"encoder.norm.{k}": v for k, v in final.state_dict().items()})
    torch.save(state, tmp_path / "v2.pth")
    converted = read_source(tmp_path / "v2.pth", overrides=Overrides(num_heads=heads, **FLAGS))
    assert converted.model.config.init_values > 0
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        x = proj(clip).flatten(2).transpose(1, 2) + sinusoid_table(8, dim)
        for block in blocks:
            x = block(x)
        check(converted.model.forward_features(clip, pool=False), final(x))


_ran = []


def _mark(*args):  # what a malicious pickle would call; reading must never reach it
    _ran.append(args)
    return {}


class _Payload:
    def __reduce__(self):
        return _mark, ("ran",)


def test_loading_runs_no_code_from_the_file(tmp_path):
    torch.manual_seed(4)
    hf = perturb(transformers.VideoMAEModel(transformers.VideoMAEConfig(**SIZE)))
    path = tmp_path / "evil.pth"
    torch.save({"model": original_layout(hf.state_dict(), ""), "payload": _Payload()}, path)
    converted = read_source(path, overrides=Overrides(num_heads=2, **FLAGS))
    assert _ran == [] and converted.model.config.depth == 2
