"""``FMAE.set_grad_checkpointing``: the encoder's and decoder's blocks recomputed in the
backward pass, with the same gradients and weights, and fewer tensors kept for it."""

import torch

from fmae.benchmarking.step import random_batch
from fmae.masking import make_mask
from fmae.model import FMAE, get_config
from fmae.pretraining.step import PretrainConfig, Pretrainer

CONFIG = get_config("fmae_vit_tiny", img_size=32, num_frames=4)


def _model(checkpointing: bool) -> FMAE:
    torch.manual_seed(0)
    model = FMAE(CONFIG)
    model.set_grad_checkpointing(checkpointing)
    return model


def _batch():
    clip, _ = random_batch(CONFIG, 2, torch.Generator().manual_seed(1))
    return clip, make_mask("random", 0.5, batch=2, grid=CONFIG.grid, generator=torch.Generator().manual_seed(2))


def _calls(model: FMAE) -> list[str]:
    """Records each start of the first encoder block and the first decoder block (a
    recomputation stops once it has remade what the backward pass needs: no forward hook
    would see it end)."""
    calls: list[str] = []
    model.blocks[0].register_forward_pre_hook(lambda *_: calls.append("encoder"))
    model.decoder_blocks[0].register_forward_pre_hook(lambda *_: calls.append("decoder"))
    return calls


def _loss_and_grads(model: FMAE) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    clip, mask = _batch()
    out = model(clip, mask)
    loss = ((out.pred - out.target) ** 2).mean()
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


def test_the_same_gradients_from_blocks_run_twice():
    plain, recomputed = _model(False), _model(True)
    plain_calls, recomputed_calls = _calls(plain), _calls(recomputed)
    want_loss, want = _loss_and_grads(plain)
    got_loss, got = _loss_and_grads(recomputed)
    # Forward, then again in the backward pass (decoder first: backward runs back to front).
    assert plain_calls == ["encoder", "decoder"]
    assert recomputed_calls == ["encoder", "decoder", "decoder", "encoder"]
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=0)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-9, msg=name)


def test_fewer_tensors_are_kept_for_the_backward_pass():
    """The bytes autograd saves for the backward pass in the forward: with checkpointing, each
    block's input instead of everything inside the blocks."""
    clip, mask = _batch()
    kept = {}
    for checkpointing in (False, True):
        total = [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _model(checkpointing)(clip, mask)
        kept[checkpointing] = total[0]
    assert kept[True] < kept[False] / 3, kept


def test_no_recomputation_without_gradients_and_no_change_to_the_weights():
    plain, recomputed = _model(False), _model(True)
    assert plain.state_dict().keys() == recomputed.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), recomputed.state_dict().values()))
    calls = _calls(recomputed)
    clip, mask = _batch()
    with torch.no_grad():
        out = recomputed(clip, mask)
    assert calls == ["encoder", "decoder"] and not out.pred.requires_grad
    features = recomputed.forward_features(clip)
    assert features.requires_grad and calls[2:] == ["encoder"]


def test_the_pretrainer_turns_it_on():
    config = dict(mask_ratio=0.5, batch_size=2)
    assert Pretrainer(CONFIG, PretrainConfig(**config, grad_checkpointing=True)).model.grad_checkpointing
    assert not Pretrainer(CONFIG, PretrainConfig(**config)).model.grad_checkpointing
