"""Hugging Face VideoMAE ↔ FMAE: the converted model computes what transformers computes.

Random weights (perturbed so that no bias is zero and no norm is the identity), small
sizes, CPU, fp32; the criterion is max |FMAE - HF| ≤ 1e-4 × mean |HF|.
"""

import json

import pytest
import torch
from hf_sizes import TINY_VIDEOMAE

from fmae.interop import Overrides, read_source, write_hf
from fmae.interop.hf import read_hf
from fmae.model import FMAE, get_config
from fmae.weights import ENCODER_PREFIXES

transformers = pytest.importorskip("transformers")

# Three sizes: tubelets 2×16² and 1×8², MLP ratios 4 and 2, with and without q/v biases; and ViT-B's width.
SIZES = [
    TINY_VIDEOMAE,
    dict(
        image_size=48,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=384,
        layer_norm_eps=1e-6,
        decoder_hidden_size=48,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=3,
        decoder_intermediate_size=192,
    ),
    dict(
        image_size=32,
        patch_size=8,
        num_frames=2,
        tubelet_size=1,
        hidden_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=384,
        qv_bias=False,
        decoder_hidden_size=64,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=128,
    ),
    dict(
        image_size=32,
        patch_size=16,
        num_frames=2,
        tubelet_size=2,
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=3072,
        decoder_hidden_size=384,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=6,
        decoder_intermediate_size=1536,
    ),
]
IDS = ["64w-2x16", "96w-eps1e-6", "192w-1x8-nobias", "768w-vitb"]


def perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return module.eval()


def hf_model(cls, size, seed=0, **extra):
    torch.manual_seed(seed)
    return perturb(cls(transformers.VideoMAEConfig(**size, **extra)), seed)


def clip_for(size, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size["num_frames"], size["image_size"], size["image_size"], generator=g)


def hf_input(clip):
    return clip.transpose(1, 2)  # HF reads [B, T, C, H, W]


def mask_for(size, batch=2, ratio=0.5, seed=2):
    n = (size["num_frames"] // size["tubelet_size"]) * (size["image_size"] // size["patch_size"]) ** 2
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(batch, n, generator=g).argsort(dim=1)
    return order < round(ratio * n)  # the same count in every row, True = masked


def check(ours, theirs, rel=1e-4):
    err, scale = float((ours - theirs).abs().max()), float(theirs.abs().mean())
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel} × mean |output| {scale:.3g}"
    return err / scale


def saved(model, tmp_path, name="hf"):
    model.save_pretrained(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("use_mean_pooling", [False, True])
@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_video_mae_model_tokens(size, use_mean_pooling, tmp_path):
    hf = hf_model(transformers.VideoMAEModel, size, use_mean_pooling=use_mean_pooling)
    converted = read_source(saved(hf, tmp_path))
    assert converted.source["format"] == "hf" and not converted.has_decoder
    c = converted.model.config
    assert c.pooling == ("mean" if use_mean_pooling else "norm_mean")
    assert c.qkv_bias == ("qv" if size.get("qv_bias", True) else "none")
    clip = clip_for(size)
    with torch.no_grad():
        want = hf(hf_input(clip)).last_hidden_state
        check(converted.model.forward_features(clip, pool=False), want)
        check(converted.model.forward_features(clip), want.mean(1))


@pytest.mark.parametrize("size", SIZES[:3], ids=IDS[:3])
def test_video_classification_pooled_features(size, tmp_path):
    hf = hf_model(transformers.VideoMAEForVideoClassification, size, num_labels=3)
    fed = []
    hf.classifier.register_forward_hook(lambda module, args, out: fed.append(args[0]))
    converted = read_source(saved(hf, tmp_path))
    assert converted.model.config.pooling == "mean_fc_norm"
    assert any("classifier" in note for note in converted.source["notes"])
    clip = clip_for(size)
    with torch.no_grad():
        hf(hf_input(clip))
        tokens = hf.videomae(hf_input(clip)).last_hidden_state
        check(converted.model.forward_features(clip), fed[0])  # fc_norm(mean(tokens)), what the classifier reads
        check(converted.model.forward_features(clip, pool=False), tokens)


@pytest.mark.parametrize("use_mean_pooling", [False, True])
@pytest.mark.parametrize("size", SIZES[:3], ids=IDS[:3])
def test_pretraining_loss(size, use_mean_pooling, tmp_path):
    hf = hf_model(transformers.VideoMAEForPreTraining, size, norm_pix_loss=True, use_mean_pooling=use_mean_pooling)
    converted = read_source(saved(hf, tmp_path))
    model = converted.model
    assert converted.has_decoder and model.config.norm_pix_loss and not model.config.decoder_embed_bias
    clip, mask = clip_for(size), mask_for(size)
    with torch.no_grad():
        out = hf(hf_input(clip), bool_masked_pos=mask)
        ours = model(clip, mask)
        check(ours.pred, out.logits)  # HF's visible-then-masked order and FMAE's grid give the same predictions
        check(((ours.pred - ours.target) ** 2).mean(), out.loss)


def test_pretraining_pixel_targets(tmp_path):
    # Without norm_pix_loss HF predicts [0, 1] pixels; the converted head predicts FMAE's normalised ones.
    size = SIZES[0]
    hf = hf_model(transformers.VideoMAEForPreTraining, size, norm_pix_loss=False)
    model = read_source(saved(hf, tmp_path)).model
    clip, mask = clip_for(size), mask_for(size)
    mean = torch.tensor([0.485, 0.456, 0.406]).repeat(model.config.cube_dim // 3)
    std = torch.tensor([0.229, 0.224, 0.225]).repeat(model.config.cube_dim // 3)
    with torch.no_grad():
        out = hf(hf_input(clip), bool_masked_pos=mask)
        check(model(clip, mask).pred * std + mean, out.logits)


def test_transformers4_folder_names(tmp_path):
    # Folders saved by transformers 4 name the q/v biases q_bias / v_bias and the config key qkv_bias.
    from safetensors.torch import load_file, save_file

    size = SIZES[0]
    hf = hf_model(transformers.VideoMAEModel, size)
    folder = saved(hf, tmp_path)
    state = load_file(folder / "model.safetensors")
    save_file(
        {k.replace("query.bias", "q_bias").replace("value.bias", "v_bias"): v for k, v in state.items()},
        folder / "model.safetensors",
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg["qkv_bias"] = cfg.pop("qv_bias")
    (folder / "config.json").write_text(json.dumps(cfg))
    clip = clip_for(size)
    with torch.no_grad():
        want = hf(hf_input(clip)).last_hidden_state
        check(read_hf(folder, Overrides()).model.forward_features(clip, pool=False), want)


def _representable(**overrides):
    # An FMAE model that HF can hold exactly: q/v biases, no decoder_embed bias, HF's 1e-5 decoder norm.
    config = get_config(
        "fmae_vit_tiny",
        img_size=32,
        num_frames=4,
        qkv_bias="qv",
        decoder_embed_bias=False,
        norm_pix_loss=True,
        decoder_norm_eps=1e-5,
        **overrides,
    )
    torch.manual_seed(3)
    return perturb(FMAE(config), seed=3)


def _loading_info(cls, folder):
    _, info = cls.from_pretrained(folder, output_loading_info=True)
    return {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}


@pytest.mark.parametrize("pooling", ["norm_mean", "mean", "mean_fc_norm"])
def test_fmae_hf_fmae_round_trip_is_bit_exact(pooling, tmp_path):
    model = _representable(pooling=pooling, **({"norm_eps": 1e-5} if pooling == "mean_fc_norm" else {}))
    cls_name, notes = write_hf(model, tmp_path / "hf", with_decoder=pooling != "mean_fc_norm")
    assert notes == []
    back = read_source(tmp_path / "hf")
    assert back.model.config == model.config
    assert back.has_decoder == (cls_name == "VideoMAEForPreTraining")
    mine, theirs = model.state_dict(), back.model.state_dict()
    compared = [k for k in mine if back.has_decoder or k.startswith(ENCODER_PREFIXES)]
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in compared)
    cls = getattr(transformers, cls_name)
    assert _loading_info(cls, tmp_path / "hf") == {}
    if cls_name == "VideoMAEForPreTraining":
        # Like every HF pre-training folder, it holds a decoder that VideoMAEModel has no place for; the
        # encoder alone is a folder that VideoMAEModel loads without a word.
        assert write_hf(model, tmp_path / "encoder", with_decoder=False) == ("VideoMAEModel", [])
        assert _loading_info(transformers.VideoMAEModel, tmp_path / "encoder") == {}
        encoder = read_source(tmp_path / "encoder").model.state_dict()
        assert all(torch.equal(encoder[k], mine[k]) for k in encoder if not k.startswith(("decoder", "mask")))
    hf = cls.from_pretrained(tmp_path / "hf").eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        if cls_name == "VideoMAEForVideoClassification":  # no labels: its logits are the pooled features
            check(model.forward_features(clip), hf(hf_input(clip)).logits)
        else:
            mask = mask_for(dict(num_frames=4, tubelet_size=2, image_size=32, patch_size=16))
            out, ours = hf(hf_input(clip), bool_masked_pos=mask), model(clip, mask)
            check(model.forward_features(clip, pool=False), hf.videomae(hf_input(clip)).last_hidden_state)
            check(ours.pred, out.logits)


def test_native_fmae_to_hf(tmp_path):
    # FMAE's own architecture: the key bias is dropped (exact in arithmetic), layer scale folded, and the
    # decoder, whose decoder_embed has a bias HF lacks, left out with a note.
    torch.manual_seed(4)
    model = perturb(FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4, init_values=0.1)), seed=4)
    cls_name, notes = write_hf(model, tmp_path / "hf", with_decoder=True)
    assert cls_name == "VideoMAEModel"
    assert any("decoder left out" in n for n in notes) and any("key bias" in n for n in notes)
    assert any("layer scale" in n for n in notes)
    assert _loading_info(transformers.VideoMAEModel, tmp_path / "hf") == {}
    hf = transformers.VideoMAEModel.from_pretrained(tmp_path / "hf").eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        check(model.forward_features(clip, pool=False), hf(hf_input(clip)).last_hidden_state)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_hf(model, tmp_path / "hf", with_decoder=False)
    write_hf(model, tmp_path / "hf", with_decoder=False, overwrite=True)


def test_what_hf_cannot_hold(tmp_path):
    model = FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4, position_embedding="learned"))
    with pytest.raises(ValueError, match="learned position table"):
        write_hf(model, tmp_path / "a", with_decoder=False)
    model = FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4, position_embedding="sincos_thw"))
    with pytest.raises(ValueError, match="one sin/cos position table per axis"):
        write_hf(model, tmp_path / "a", with_decoder=False)
    # A hinted decoder: the encoder goes, the decoder stays out (HF's decoder has no hint input).
    model = FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4, decoder_hint="temporal_interp"))
    cls_name, notes = write_hf(model, tmp_path / "hinted", with_decoder=True)
    assert cls_name == "VideoMAEModel" and any("temporal_interp hint" in n for n in notes)
    model = FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4, decoder_mean_cube=True))
    cls_name, notes = write_hf(model, tmp_path / "mean-cube", with_decoder=True)
    assert cls_name == "VideoMAEModel" and any("mean cube" in n for n in notes)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="'vit' model"):
        read_source(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        read_source(bad)
