"""``python -m fmae.convert SRC DST``: other implementations' checkpoints to FMAE's weights,
and FMAE's to a Hugging Face folder; the work is :func:`fmae.interop.convert`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from fmae.interop import FORMATS, ConvertConfig, convert
from fmae.runtime.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.convert",
        description="Convert a checkpoint to FMAE's weights (NAME.safetensors + NAME.json, which fmae.load_encoder,\n"
        "fmae.probe and the other tools read), or FMAE's weights to a Hugging Face VideoMAE folder (--to hf).\n\n"
        "SRC is detected (--from to say it):\n"
        "  hf        a transformers save_pretrained folder of VideoMAEModel, VideoMAEForPreTraining or\n"
        "            VideoMAEForVideoClassification (config.json + model.safetensors or pytorch_model.bin)\n"
        "  videomae  a .pth/.pt/.bin/.safetensors checkpoint of the original VideoMAE or VideoMAE V2 code\n"
        "            (pre-training: encoder.*/decoder.* keys; or fine-tuned), as saved or under 'model'/'module'\n"
        "  marlin    a MARLIN .pt state dict (encoder only, or with its decoder) or Lightning .ckpt\n"
        "  fmae      FMAE's own weights, pre-training checkpoint or run folder\n\n"
        "The converted encoder computes the source's features (forward_features: tokens, or pooled as the\n"
        "source pools them); the decoder comes along when the source has one. Pickled files are read with\n"
        "torch.load(weights_only=True): converting never runs code from the checkpoint.",
        epilog="Examples:\n"
        "  python -m fmae.convert videomae-base/ videomae-base.safetensors        # an HF folder\n"
        "  python -m fmae.convert checkpoint.pth vitb.safetensors --num-heads 12   # VideoMAE / V2 (no config inside)\n"
        "  python -m fmae.convert marlin_vit_base_ytf.full.pt marlin-b.safetensors  # MARLIN (heads = width / 64)\n"
        "  python -m fmae.convert runs/pretrain hf-out/ --to hf                   # FMAE -> transformers (a run\n"
        "                                                                         # with --position-embedding sincos)\n"
        "Files without a config (VideoMAE, MARLIN) store neither the number of attention heads nor the clip size: "
        "they are inferred (and reported) unless given with --num-heads, --decoder-num-heads, --img-size, "
        "--num-frames.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src_arg", nargs="?", metavar="SRC", help="the checkpoint file or folder to convert")
    parser.add_argument("dst_arg", nargs="?", metavar="DST", help="NAME.safetensors to write (a folder with --to hf)")
    parser.add_argument(
        "--from",
        dest="from_format",
        choices=("auto", *FORMATS),
        default=None,
        help="the source's format, instead of detecting it (same as --from-format)",
    )
    return run_command(parser, ConvertConfig, _convert, argv)


def _convert(config: ConvertConfig, args: argparse.Namespace) -> int:
    config = dataclasses.replace(config, src=args.src_arg or config.src, dst=args.dst_arg or config.dst)
    result = convert(config)
    src = result.source
    layout = f" ({src['layout']})" if src.get("layout") else ""
    print(f"wrote {result.path} ({result.written}) from {src['format']} {src['path']}{layout}")
    for note in src["notes"]:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
