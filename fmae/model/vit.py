"""The FMAE masked autoencoder: a ViT encoder over the visible tokens and a narrower decoder.

In the manner of facebookresearch/mae's ``models_mae.py``:

- clips are ``float [B, C, T, H, W]`` (normalised pixels), cut into tubelet cubes of
  ``tt × th × tw`` (default 2 × 16 × 16) in VideoMAE token order
  ``n = (ti·Hp + hi)·Wp + wi``; a cube is flattened in ``(t, h, w, c)`` order, so one
  token is ``P = tt·th·tw·C`` numbers (1536 by default) — :func:`patchify`;
- the tubelet embedding is a ``Linear(P, D)`` on flattened cubes. It equals VideoMAE's
  ``Conv3d(C, D, kernel_size=tubelet, stride=tubelet)`` whose weight is
  ``linear.weight.view(D, tt, th, tw, C).permute(0, 4, 1, 2, 3)``
  (:meth:`FMAE.patch_embed_conv3d_weight`); as a Linear it embeds only the visible
  cubes, so the masked 90 % cost nothing in the embedding or its backward;
- fixed 1-D sinusoidal position embeddings over the ``N`` tokens (VideoMAE's table);
- a pre-norm ViT encoder over the visible tokens only (picked with
  :func:`fmae.ops.gather_tokens`); attention goes through :func:`fmae.ops.attention`;
  :meth:`FMAE.forward_features` runs it on every token and mean-pools;
- a narrower ViT decoder over the visible tokens and the masked positions it
  reconstructs (all ``M`` masked tokens, or with decoder masking — VideoMAE V2's dual
  masking, :func:`fmae.masking.decoder_targets` — ``K`` of them): its input is built by
  :func:`fmae.ops.decoder_input` in HF's layout, the encoder's tokens first, then a
  learned mask token at each target position, each plus its position embedding; a
  linear head predicts the ``P`` pixels of each target cube from the last ``K`` rows;
  with ``decoder_hint`` (:mod:`fmae.model.hint`) a target also gets the cubes seen at its
  place at other times, and the head predicts what they miss;
- targets are the masked cubes' pixels (the paper's eq. 4), or with
  ``norm_pix_loss`` the cubes normalised per cube and channel (VideoMAE's targets).

Sizes come from a registry of :class:`FMAEConfig` (:func:`create`, :func:`get_config`).

A few config fields describe other implementations' architectural choices
(:data:`ARCHITECTURE_OPTIONS`: q/v-only attention biases, LayerNorm epsilons, layer scale,
where the final norm sits relative to the pooling, stored position tables, a decoder
embedding without bias). Their defaults are FMAE's own architecture; other values let a
model converted from Hugging Face VideoMAE, the original VideoMAE / VideoMAE V2 code or
MARLIN (:mod:`fmae.interop`) compute exactly what its source computes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from fmae.model.hint import DECODER_HINTS, interpolate, nearest_visible_index, temporal_neighbours
from fmae.ops import attention, decoder_input, gather_tokens, visible_index

QKV_BIASES = ("qkv", "qv", "none")
"""``qkv``: one bias for q, k and v (FMAE); ``qv``: biases on q and v only, k's fixed at
zero (VideoMAE's ``q_bias``/``v_bias``, MARLIN, HF ``qv_bias``); ``none``: no bias."""
POOLINGS = ("norm_mean", "mean_norm", "mean_fc_norm", "mean")
"""How :meth:`FMAE.forward_features` treats the final norm, with the tokens it returns
(``pool=False``) and the pooled vector (``pool=True``):

- ``norm_mean``: tokens ``norm(x)``, pooled ``mean(norm(x))`` (FMAE; original VideoMAE
  pre-training encoders; HF ``VideoMAEModel`` with ``use_mean_pooling=False``);
- ``mean_norm``: tokens ``norm(x)``, pooled ``norm(mean(x))`` (MARLIN's
  ``extract_features`` with and without ``seq_mean_pool``);
- ``mean_fc_norm``: tokens ``x``, pooled ``fc_norm(mean(x))`` (HF
  ``VideoMAEForVideoClassification``, fine-tuned VideoMAE checkpoints);
- ``mean``: tokens ``x``, pooled ``mean(x)``, no final norm (HF ``VideoMAEModel`` with
  ``use_mean_pooling=True``).

``x`` are the last block's outputs. The decoder always gets the tokens."""
POSITION_EMBEDDINGS = ("sincos", "fixed", "learned", "sincos_thw")
"""``sincos``: both tables rebuilt from the config, not saved (FMAE, VideoMAE, HF);
``fixed``: both tables saved with the weights, not trained (MARLIN, whose float32
tables differ from the float64-built ones by up to ~1e-4 at ViT-B sizes); ``learned``: the
encoder's table is a trained parameter (VideoMAE's ``use_learnable_pos_emb``), the
decoder's stays ``sincos``; ``sincos_thw``: like ``sincos`` but one sin/cos table per grid
axis, side by side (:func:`grid_sinusoid_table`), so a token's row and column are linear in its
embedding, not folded into one running index."""
_NEAREST_GATE_BIAS = -3.0
"""``interp_nearest``'s gate starts at sigmoid(-3) ≈ 0.05 for every token."""


@dataclass
class FMAEConfig:
    """Everything that fixes an FMAE model's shapes (and its discriminator's).

    ``backend`` picks the implementation of the token gather/scatter ops and
    ``attention_backend`` that of attention (see :mod:`fmae.ops`); neither changes the
    weights.
    """

    img_size: int = 224
    num_frames: int = 16
    tubelet: tuple[int, int, int] = (2, 16, 16)
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = False
    disc_dim: int = 512
    disc_depth: int = 3
    # Architecture options for converted models (ARCHITECTURE_OPTIONS); the defaults are FMAE's own.
    qkv_bias: str = "qkv"
    """Attention biases of every block, encoder and decoder: one of :data:`QKV_BIASES`."""
    layer_norm_eps: float = 1e-6
    """Epsilon of the LayerNorms inside every block, encoder and decoder."""
    norm_eps: float = 1e-6
    """Epsilon of the encoder's final norm (``norm``, or ``fc_norm``: see :data:`POOLINGS`)."""
    decoder_norm_eps: float = 1e-6
    """Epsilon of the decoder's final norm ``decoder_norm``."""
    init_values: float = 0.0
    """> 0: the encoder's blocks have layer scale (``gamma_1``, ``gamma_2``), initialised to this."""
    decoder_init_values: float = 0.0
    """The same for the decoder's blocks."""
    pooling: str = "norm_mean"
    """One of :data:`POOLINGS`."""
    position_embedding: str = "sincos"
    """One of :data:`POSITION_EMBEDDINGS`."""
    decoder_embed_bias: bool = True
    """Whether ``decoder_embed`` has a bias (VideoMAE's and MARLIN's have none)."""
    decoder_hint: str = "none"
    """One of :data:`fmae.model.hint.DECODER_HINTS`: what a hidden token's decoder input holds
    beside the mask token and its position."""
    decoder_mean_cube: bool = False
    """Whether the prediction of a target without a hint adds a learned cube for its token
    position (``decoder_mean_cube``, ``[N, P]``); a fresh pre-training run starts it at the
    mean training cube there (:func:`fmae.pretraining.train`), so the decoder starts from the
    mean face and learns what a clip adds to it."""
    backend: str = "auto"
    attention_backend: str = "auto"

    def __post_init__(self) -> None:
        self.tubelet = tuple(int(t) for t in self.tubelet)
        if len(self.tubelet) != 3 or min(self.tubelet) < 1:
            raise ValueError(f"tubelet must be three positive sizes, got {self.tubelet}")
        tt, th, tw = self.tubelet
        if self.num_frames % tt or self.img_size % th or self.img_size % tw or min(self.num_frames, self.img_size) < 1:
            raise ValueError(
                f"tubelet {self.tubelet} must divide (num_frames, img_size, img_size) = "
                f"({self.num_frames}, {self.img_size}, {self.img_size})"
            )
        for dim, heads, what in (
            (self.embed_dim, self.num_heads, "embed_dim"),
            (self.decoder_embed_dim, self.decoder_num_heads, "decoder_embed_dim"),
        ):
            if heads < 1 or dim % heads:
                raise ValueError(f"{what} {dim} must be a positive multiple of its number of heads {heads}")
        if min(self.depth, self.decoder_depth, self.disc_depth, self.disc_dim, self.in_chans) < 1:
            raise ValueError("depths, disc_dim and in_chans must be positive")
        for name, allowed in (
            ("qkv_bias", QKV_BIASES),
            ("pooling", POOLINGS),
            ("position_embedding", POSITION_EMBEDDINGS),
            ("decoder_hint", DECODER_HINTS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if min(self.layer_norm_eps, self.norm_eps, self.decoder_norm_eps) <= 0:
            raise ValueError("LayerNorm epsilons must be positive")
        if min(self.init_values, self.decoder_init_values) < 0:
            raise ValueError("init_values must be >= 0 (0: no layer scale)")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid ``(T', Hp, Wp)``."""
        tt, th, tw = self.tubelet
        return self.num_frames // tt, self.img_size // th, self.img_size // tw

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def cube_dim(self) -> int:
        """``P = tt·th·tw·C``, the numbers in one flattened cube."""
        return math.prod(self.tubelet) * self.in_chans

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists), for YAML or JSON.

        The :data:`ARCHITECTURE_OPTIONS` are written only where they differ from FMAE's
        own architecture, so a native config reads as it did before they existed (and
        :func:`fmae.weights.fingerprint`, made from it, is unchanged).
        """
        d = dataclasses.asdict(self)
        d["tubelet"] = list(self.tubelet)
        for name in ARCHITECTURE_OPTIONS:
            if d[name] == _FMAE_DEFAULTS[name]:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FMAEConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults (configs written
        before a field existed), unknown keys raise ``TypeError``."""
        return cls(**d)


ARCHITECTURE_OPTIONS: tuple[str, ...] = (
    "qkv_bias",
    "layer_norm_eps",
    "norm_eps",
    "decoder_norm_eps",
    "init_values",
    "decoder_init_values",
    "pooling",
    "position_embedding",
    "decoder_embed_bias",
    "decoder_hint",
    "decoder_mean_cube",
)
"""Fields that reproduce other implementations' architectures (:mod:`fmae.interop`) or that
FMAE added later, each defaulting to the architecture FMAE first had."""
_FMAE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FMAEConfig)}


MODEL_CONFIGS: dict[str, FMAEConfig] = {
    # Trains in minutes on a 2-core CPU; use a smaller img_size (64, 96) for demos.
    "fmae_vit_tiny": FMAEConfig(
        embed_dim=192,
        depth=4,
        num_heads=3,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        disc_dim=256,
        disc_depth=2,
    ),
    "fmae_vit_small": FMAEConfig(
        embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=192, decoder_depth=4, decoder_num_heads=3, disc_dim=384
    ),
    # The paper's ViT-B/768 with VideoMAE's decoder.
    "fmae_vit_base": FMAEConfig(),
    "fmae_vit_large": FMAEConfig(
        embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=8
    ),
}


def get_config(name: str, **overrides: Any) -> FMAEConfig:
    """The registered config ``name`` with ``overrides`` applied (unknown fields raise ``TypeError``)."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_CONFIGS)}")
    return dataclasses.replace(MODEL_CONFIGS[name], **overrides)


def create(name: str, **overrides: Any) -> "FMAE":
    """A freshly initialised :class:`FMAE` of the registered size ``name``, e.g.
    ``create("fmae_vit_tiny", img_size=64)``."""
    return FMAE(get_config(name, **overrides))


def patchify(clip: torch.Tensor, tubelet: Sequence[int]) -> torch.Tensor:
    """Cut a clip into flattened cubes.

    clip: ``[B, C, T, H, W]`` → ``[B, N, tt·th·tw·C]``, tokens in VideoMAE order,
    each cube flattened in ``(t, h, w, c)`` order.
    """
    B, C, T, H, W = clip.shape
    tt, th, tw = tubelet
    x = clip.reshape(B, C, T // tt, tt, H // th, th, W // tw, tw)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # B, T', Hp, Wp, tt, th, tw, C
    return x.reshape(B, (T // tt) * (H // th) * (W // tw), tt * th * tw * C)


def unpatchify(cubes: torch.Tensor, grid: Sequence[int], tubelet: Sequence[int], in_chans: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, N, tt·th·tw·C]`` → ``[B, C, T, H, W]``."""
    (t, h, w), (tt, th, tw) = grid, tubelet
    B = cubes.shape[0]
    x = cubes.reshape(B, t, h, w, tt, th, tw, in_chans).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(B, in_chans, t * tt, h * th, w * tw)


def normalize_cubes(cubes: torch.Tensor, in_chans: int, eps: float = 1e-6) -> torch.Tensor:
    """Per-cube, per-channel normalised cubes (VideoMAE's ``norm_pix_loss`` targets).

    cubes: ``[B, M, P]`` in ``(t, h, w, c)`` order → float32 ``[B, M, P]``.
    """
    x = cubes.float().unflatten(-1, (-1, in_chans))  # [B, M, tt·th·tw, C]
    mean, var = x.mean(dim=-2, keepdim=True), x.var(dim=-2, keepdim=True)
    return ((x - mean) / (var + eps).sqrt()).flatten(-2)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed 1-D sin/cos table: float32 ``[n, dim]``, sines in even columns."""
    pos = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    rates = torch.pow(10000.0, 2 * (torch.arange(dim) // 2).double() / dim)
    angles = pos / rates
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.float()


def grid_sinusoid_table(grid: Sequence[int], dim: int) -> torch.Tensor:
    """Factorised sin/cos table over a ``(T', Hp, Wp)`` token grid: float32 ``[T'·Hp·Wp, dim]``,
    tokens in :func:`patchify` order; columns ``[0, a)`` hold :func:`sinusoid_table` of the row,
    ``[a, 2a)`` of the column and the rest of the time slice, ``a = 2·⌊dim / 6⌋``.

    In the 1-D table a token's row and column are folded into one index (``t·Hp·Wp + h·Wp +
    w``), which a narrow decoder must unfold before it can place a face's parts; here each is a
    sinusoid of its own.
    """
    if dim % 2 or dim < 6:
        raise ValueError(f"a factorised sin/cos table needs an even width of at least 6, got {dim}")
    t, h, w = grid
    a = 2 * (dim // 6)
    times, rows, cols = (i.flatten() for i in torch.meshgrid(*map(torch.arange, (t, h, w)), indexing="ij"))
    return torch.cat([sinusoid_table(h, a)[rows], sinusoid_table(w, a)[cols], sinusoid_table(t, dim - 2 * a)[times]], 1)


def position_table(config: "FMAEConfig", dim: int) -> torch.Tensor:
    """The position table of width ``dim`` that ``config.position_embedding`` builds (the
    factorised one for ``sincos_thw``, VideoMAE's 1-D one otherwise)."""
    if config.position_embedding == "sincos_thw":
        return grid_sinusoid_table(config.grid, dim)
    return sinusoid_table(config.num_tokens, dim)


class Attention(nn.Module):
    """Multi-head self-attention through :func:`fmae.ops.attention`.

    ``qkv_bias`` (:data:`QKV_BIASES`): ``qkv`` gives ``qkv`` a bias; ``qv`` gives it none
    and adds ``q_bias`` and ``v_bias`` parameters instead, the key's bias being zero (a key
    bias shifts every score of a query by the same amount, which the softmax ignores).
    """

    def __init__(self, dim: int, num_heads: int, backend: str = "auto", qkv_bias: str = "qkv") -> None:
        super().__init__()
        self.num_heads, self.backend = num_heads, backend
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias == "qkv")
        if qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, L, D]`` → ``[B, L, D]``."""
        B, L, D = x.shape
        if self.q_bias is None:
            qkv = self.qkv(x)
        else:
            qkv = F.linear(x, self.qkv.weight, torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias)))
        q, k, v = qkv.reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, backend=self.backend)  # [B, heads, L, head_dim]
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``; with
    layer scale (``init_values > 0``) each branch is multiplied by a learned per-channel
    ``gamma_1`` / ``gamma_2`` first."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        backend: str = "auto",
        qkv_bias: str = "qkv",
        eps: float = 1e-6,
        init_values: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, backend, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if init_values > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, L, D]`` → ``[B, L, D]``."""
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class Reconstruction(NamedTuple):
    """What :meth:`FMAE.forward` returns for a batch whose decoder reconstructs ``K``
    masked tokens per clip (``K = M``, every masked token, unless decoder masking picked
    a subset)."""

    pred: torch.Tensor
    """``[B, K, P]`` predicted cubes (autocast dtype when autocast is on)."""
    target: torch.Tensor
    """float32 ``[B, K, P]`` the real cubes there (normalised when ``norm_pix_loss``)."""
    masked_index: torch.Tensor
    """int64 ``[B, K]`` token index of each predicted cube: the positions predicted,
    ascending (all masked tokens, or ``targets`` as given to :meth:`FMAE.forward`)."""


def init_weights(module: nn.Module) -> None:
    # MAE's initialisation: xavier-uniform linears (the patch embedding included, since
    # it is a Linear on flattened cubes), unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class FMAE(nn.Module):
    """Masked autoencoder over tubelet tokens (encoder on visible tokens, narrow decoder)."""

    def __init__(self, config: FMAEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.patch_embed = nn.Linear(c.cube_dim, c.embed_dim)
        self.blocks = nn.ModuleList(
            Block(
                c.embed_dim, c.num_heads, c.mlp_ratio, c.attention_backend, c.qkv_bias, c.layer_norm_eps, c.init_values
            )
            for _ in range(c.depth)
        )
        # The final norm: on every token, or (mean_fc_norm) as fc_norm on the pooled vector only; see POOLINGS.
        token_norm = c.pooling in ("norm_mean", "mean_norm")
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps) if token_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps) if c.pooling == "mean_fc_norm" else None
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim, bias=c.decoder_embed_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(
                c.decoder_embed_dim,
                c.decoder_num_heads,
                c.mlp_ratio,
                c.attention_backend,
                c.qkv_bias,
                c.layer_norm_eps,
                c.decoder_init_values,
            )
            for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=c.decoder_norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.cube_dim)
        if c.decoder_hint != "none":
            # A hinted token's input: the hint cube, embedded, plus a token for its kind (row 0:
            # interpolated in time; row 1, interp_nearest's: the nearest visible cube).
            self.hint_embed = nn.Linear(c.cube_dim, c.decoder_embed_dim)
            kinds = 2 if c.decoder_hint == "interp_nearest" else 1
            self.hint_token = nn.Parameter(torch.zeros(1, kinds, c.decoder_embed_dim))
        if c.decoder_hint == "interp_nearest":
            # The nearest cube gets an embedding of its own: through a shared one, the decoder's
            # habit of copying it onto a hidden wall leaked onto the interpolated tokens, whose
            # prediction already holds their cube (levers.md, "in3" against "sep3").
            self.hint_gate = nn.Linear(c.decoder_embed_dim, 1)
            self.nearest_embed = nn.Linear(c.cube_dim, c.decoder_embed_dim)
        if c.decoder_mean_cube:
            # A per-position cube the head could learn only through the position tables, a
            # learning rate's step at a time; zero until the trainer fills it (the mean cube).
            self.decoder_mean_cube = nn.Parameter(torch.zeros(c.num_tokens, c.cube_dim))
        # sincos tables are rebuilt from the config, so not saved; see POSITION_EMBEDDINGS for the others.
        table = position_table(c, c.embed_dim)
        if c.position_embedding == "learned":
            self.pos_embed = nn.Parameter(table)
        else:
            self.register_buffer("pos_embed", table, persistent=c.position_embedding == "fixed")
        self.register_buffer(
            "decoder_pos_embed",
            position_table(c, c.decoder_embed_dim),
            persistent=c.position_embedding == "fixed",
        )
        self.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        if c.decoder_hint != "none":
            nn.init.normal_(self.hint_token, std=0.02)
            # The prediction starts as the hint (zero where there is none): the decoder learns
            # corrections, instead of first unlearning a random head's noise over the hint.
            nn.init.zeros_(self.decoder_pred.weight)
            nn.init.zeros_(self.decoder_pred.bias)
        if c.decoder_hint == "interp_nearest":
            # Nearly closed: a copy of the skin beside a hidden eye is a poor start; the decoder
            # opens the gate where the copy pays (a wall), not the other way round.
            nn.init.zeros_(self.hint_gate.weight)
            nn.init.constant_(self.hint_gate.bias, _NEAREST_GATE_BIAS)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each encoder and decoder block in the backward pass instead of keeping
        its activations (``torch.utils.checkpoint``, non-reentrant).

        A block then keeps only its input ``[B, L, D]`` for the backward pass, not the dozen
        tensors of that size (and the MLP's four-times-wider ones) inside it, at the price of
        running its forward twice. The gradients are the same, and neither the weights nor
        the state dict change: a plain attribute, not a config field.
        """
        self.grad_checkpointing = bool(enabled)

    def _run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, L, D]`` through ``blocks`` → ``[B, L, D]``, each block checkpointed when
        :meth:`set_grad_checkpointing` asked for it and autograd is recording (without
        gradients there is nothing to keep)."""
        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        for block in blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return x

    @property
    def cube_dim(self) -> int:
        return self.config.cube_dim

    def patch_embed_conv3d_weight(self) -> torch.Tensor:
        """The patch embedding as VideoMAE's Conv3d weight ``[D, C, tt, th, tw]`` (bias is
        ``patch_embed.bias``)."""
        c = self.config
        return self.patch_embed.weight.view(c.embed_dim, *c.tubelet, c.in_chans).permute(0, 4, 1, 2, 3)

    def _check_clip(self, clip: torch.Tensor) -> None:
        c = self.config
        want = (c.in_chans, c.num_frames, c.img_size, c.img_size)
        if not isinstance(clip, torch.Tensor) or not clip.is_floating_point():
            raise TypeError(f"clip must be a floating-point tensor, got {getattr(clip, 'dtype', type(clip).__name__)}")
        if clip.dim() != 5 or tuple(clip.shape[1:]) != want:
            raise ValueError(f"clip must be [B, {', '.join(map(str, want))}] for this config, got {tuple(clip.shape)}")

    def forward_encoder(self, cubes: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Encode the visible cubes.

        cubes: ``[B, N, P]`` from :func:`patchify`; visible: int64 ``[B, N_vis]`` →
        ``[B, N_vis, D]``: the tokens of :meth:`forward_features` (``pool=False``), i.e.
        after the final norm unless ``config.pooling`` keeps the tokens un-normed.
        """
        x = self.patch_embed(gather_tokens(cubes, visible, backend=self.config.backend))
        x = x + self.pos_embed[visible].to(x.dtype)
        return self.norm(self._run_blocks(self.blocks, x))

    def forward_decoder(
        self,
        latent: torch.Tensor,
        visible: torch.Tensor,
        targets: torch.Tensor,
        hint: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Predict the cubes at ``targets``.

        latent: ``[B, N_vis, D]``; visible: int64 ``[B, N_vis]``; targets: int64 ``[B, K]``,
        masked positions (all of them, or decoder masking's subset); hint: with
        ``config.decoder_hint``, ``(cubes [B, K, P], found bool [B, K])`` at the targets, in the
        space of the targets: the interpolation in time where ``found``, else zero
        (``temporal_interp``) or the nearest visible cube (``interp_nearest``) → ``[B, K, P]``.

        The decoder runs on ``N_vis + K`` tokens laid out as HF's VideoMAE lays them
        out: the visible tokens, then a mask token at each target
        (:func:`fmae.ops.decoder_input`, one pass); attention does not care about the
        order, and the predictions are the last ``K`` rows, so nothing is gathered. Where a
        hint was found, its embedding joins the mask token and the prediction is the hint
        plus the decoder's output, so the decoder learns what the hint misses. With
        ``interp_nearest`` the other targets get the nearest cube's embedding (a layer of its
        own) and a token of their own kind, and their prediction adds that cube times a gate
        the decoder computes. With ``config.decoder_mean_cube`` a target where no hint was
        found adds its position's learned cube.
        """
        if (hint is None) != (self.config.decoder_hint == "none"):
            raise ValueError(f"decoder_hint is {self.config.decoder_hint!r}: give a hint exactly when it is not 'none'")
        x = self.decoder_embed(latent)
        index = torch.cat([visible, targets], dim=1)
        # The indices come from visible_index / decoder_targets, in range by construction: no check (a CUDA sync).
        x = decoder_input(
            x, index, self.mask_token.to(x.dtype), self.decoder_pos_embed, backend=self.config.backend, check=False
        )
        n_vis = visible.shape[1]
        nearest = self.config.decoder_hint == "interp_nearest"
        if hint is not None:
            cubes, found = hint
            h, where = cubes.to(x.dtype), found.unsqueeze(-1)
            if nearest:  # every target has a hint; its kind says which
                kind = self.hint_token.to(x.dtype)[0, (~found).long()]
                extra = torch.where(where, self.hint_embed(h), self.nearest_embed(h)) + kind
            else:
                extra = (self.hint_embed(h) + self.hint_token.to(x.dtype)) * where.to(x.dtype)
            x = torch.cat([x[:, :n_vis], x[:, n_vis:] + extra], dim=1)
        x = self._run_blocks(self.decoder_blocks, x)
        # Norm and head only where a prediction is wanted.
        rows = self.decoder_norm(x[:, n_vis:])
        pred = self.decoder_pred(rows)
        if self.config.decoder_mean_cube:
            mean = self.decoder_mean_cube.to(pred.dtype)[targets]
            pred = pred + (mean if hint is None else mean * (~hint[1]).unsqueeze(-1).to(pred.dtype))
        if hint is None:
            return pred
        keep = found.unsqueeze(-1).to(pred.dtype)
        if nearest:
            keep = keep + (1 - keep) * torch.sigmoid(self.hint_gate(rows))
        return pred + cubes.to(pred.dtype) * keep

    def forward(
        self, clip: torch.Tensor, mask: torch.Tensor, num_masked: int | None = None, targets: torch.Tensor | None = None
    ) -> Reconstruction:
        """Reconstruct the masked cubes of a batch (or, with decoder masking, some of them).

        Args:
            clip: float ``[B, C, T, H, W]`` matching the config's sizes.
            mask: bool ``[B, N]``, True = masked, the same count ``M`` in every row.
            num_masked: ``M``; give it (:func:`fmae.masking.num_masked`) to avoid a
                host synchronisation.
            targets: int64 ``[B, K]``, the masked positions the decoder reconstructs
                (:func:`fmae.masking.decoder_targets`; distinct, masked, ``1 <= K <= M``;
                checked on CPU tensors). ``None``: all ``M`` masked tokens.

        Returns:
            :class:`Reconstruction` ``(pred [B, K, P], target [B, K, P], masked_index [B, K])``.
        """
        self._check_clip(clip)
        if not isinstance(mask, torch.Tensor) or mask.shape != (clip.shape[0], self.config.num_tokens):
            raise ValueError(
                f"mask must be bool [{clip.shape[0]}, {self.config.num_tokens}], got {getattr(mask, 'shape', mask)}"
            )
        visible, masked = visible_index(mask, num_masked)
        if targets is None:
            targets = masked
        else:
            self._check_targets(targets, mask, masked.shape[1])
        cubes = patchify(clip, self.config.tubelet)
        latent = self.forward_encoder(cubes, visible)
        pred = self.forward_decoder(latent, visible, targets, self._hint(cubes, mask, targets))
        target = gather_tokens(cubes, targets, backend=self.config.backend)
        target = normalize_cubes(target, self.config.in_chans) if self.config.norm_pix_loss else target.float()
        return Reconstruction(pred, target, targets)

    def _hint(
        self, cubes: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``config.decoder_hint``'s ``(cubes [B, K, P], found [B, K])`` at the targets, from the
        visible cubes (``[B, N, P]``; mask bool ``[B, N]``), in the space of the targets; ``None``
        without a hint."""
        c = self.config
        if c.decoder_hint == "none":
            return None
        # Indices for every token, cubes for the targets only: no [B, N, P] copy.
        before, after, toward_after, found = (i.gather(1, targets) for i in temporal_neighbours(~mask, c.grid))
        if c.decoder_hint == "interp_nearest":  # where nothing was seen in time, both ends are the nearest cube
            near = nearest_visible_index(mask, c.grid, targets)
            before, after = torch.where(found, before, near), torch.where(found, after, near)
            found_any = torch.ones_like(found)
        else:
            found_any = found
        hint = interpolate(cubes, before, after, toward_after, found_any).float()
        return (normalize_cubes(hint, c.in_chans) if c.norm_pix_loss else hint), found

    @staticmethod
    def _check_targets(targets: torch.Tensor, mask: torch.Tensor, num_masked: int) -> None:
        B = mask.shape[0]
        if (
            not isinstance(targets, torch.Tensor)
            or targets.dtype != torch.int64
            or targets.dim() != 2
            or targets.shape[0] != B
            or not 1 <= targets.shape[1] <= num_masked
        ):
            raise ValueError(
                f"targets must be int64 [{B}, K] with 1 <= K <= {num_masked} (the masked tokens), "
                f"got {getattr(targets, 'dtype', type(targets).__name__)} "
                f"{tuple(getattr(targets, 'shape', ()))}"
            )
        # Reading values back would be a host sync on CUDA and a graph break under torch.compile: CPU, eager only.
        if targets.device.type == "cpu" and targets.numel() and not torch.compiler.is_compiling():
            if int(targets.min()) < 0 or int(targets.max()) >= mask.shape[1]:
                raise ValueError(f"targets must lie in [0, {mask.shape[1]})")
            if not bool(mask.gather(1, targets).all()):
                raise ValueError("targets must be masked tokens (mask True there)")
            if bool((targets.sort(dim=1).values.diff(dim=1) == 0).any()):
                raise ValueError("targets must be distinct within a row")

    def forward_features(self, clip: torch.Tensor, pool: bool = True) -> torch.Tensor:
        """Encoder features of the whole clip, no masking (for linear probing).

        clip: float ``[B, C, T, H, W]`` → ``[B, D]`` (mean over tokens) when ``pool``,
        else ``[B, N, D]``. Where the final norm sits follows ``config.pooling``
        (:data:`POOLINGS`; by default the tokens are normed, then averaged).
        """
        self._check_clip(clip)
        x = self.patch_embed(patchify(clip, self.config.tubelet))
        x = self._run_blocks(self.blocks, x + self.pos_embed.to(x.dtype))
        if not pool:
            return self.norm(x)
        if self.config.pooling == "mean_norm":
            return self.norm(x.mean(dim=1))
        if self.config.pooling == "mean_fc_norm":
            return self.fc_norm(x.mean(dim=1))
        return self.norm(x).mean(dim=1)  # norm_mean; mean (norm is the identity)

    @torch.no_grad()
    def reconstruct(
        self, clip: torch.Tensor, mask: torch.Tensor, num_masked: int | None = None, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The clip with its masked cubes replaced by the model's predictions, for viewing.

        With ``norm_pix_loss`` the predictions are de-normalised with each real cube's
        own mean and variance, as the MAE visualisations do. ``[B, C, T, H, W]`` →
        float32 ``[B, C, T, H, W]``. ``targets`` as in :meth:`forward`: only those cubes
        are replaced (by default every masked one, whatever decoder masking the model
        was trained with).
        """
        out = self(clip, mask, num_masked, targets)
        c = self.config
        cubes = patchify(clip, c.tubelet).float()
        pred = out.pred.float()
        if c.norm_pix_loss:
            real = gather_tokens(cubes, out.masked_index, backend=c.backend).unflatten(-1, (-1, c.in_chans))
            mean, std = real.mean(dim=-2, keepdim=True), (real.var(dim=-2, keepdim=True) + 1e-6).sqrt()
            pred = (pred.unflatten(-1, (-1, c.in_chans)) * std + mean).flatten(-2)
        index = out.masked_index.unsqueeze(-1).expand_as(pred)
        return unpatchify(cubes.scatter(1, index, pred), c.grid, c.tubelet, c.in_chans)
