"""Shared by the transformers interop tests."""

TINY_VIDEOMAE = dict(
    image_size=32,
    patch_size=16,
    num_frames=4,
    tubelet_size=2,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=256,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=128,
)
"""A ``transformers.VideoMAEConfig`` of the session's small set: 32×32 clips of 4 frames."""
