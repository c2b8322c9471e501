"""Which implementation a checkpoint comes from, and reading it as an FMAE model.

:func:`read_source` takes a path — a Hugging Face folder, a weights file of the original
VideoMAE / VideoMAE V2 code or of MARLIN, or FMAE's own weights, checkpoint or run
folder — recognises its layout by marker keys (or is told it) and hands it to its
reader. An unknown layout is an error that names the keys each format has and the
keys found.
"""

from __future__ import annotations

from pathlib import Path

from fmae.interop import marlin, videomae
from fmae.interop.assemble import Converted, Overrides, describe_keys
from fmae.interop.hf import is_hf_folder, read_hf
from fmae.interop.safe_load import PICKLE_SUFFIXES, find_state_dict, load_tensor_file
from fmae.weights import config_path, load_model, read_meta

FORMATS = ("hf", "videomae", "marlin", "fmae")
_HF_MARKERS = (
    "embeddings.patch_embeddings.projection.weight",
    "videomae.embeddings.patch_embeddings.projection.weight",
)
EXPECTED = (
    "hf: a Hugging Face VideoMAE folder (config.json with model.safetensors or pytorch_model.bin); "
    f"videomae: a {'/'.join(PICKLE_SUFFIXES)}/.safetensors file with {' or '.join(map(repr, videomae.MARKERS))} "
    "(optionally under 'model' or 'module'); "
    f"marlin: a .pt state dict or Lightning .ckpt with {' or '.join(map(repr, marlin.MARKERS))}; "
    "fmae: NAME.safetensors with NAME.json, a pre-training checkpoint or run folder"
)


def _is_fmae(path: Path) -> bool:
    if path.is_dir():
        return (path / "checkpoints").is_dir() or any(path.glob("ckpt-*.safetensors"))
    if path.suffix != ".safetensors":
        return False
    if path.with_suffix(".json").is_file():
        return True
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return "fmae_state" in (f.metadata() or {})
    except Exception:  # not safetensors at all: load_tensor_file says so
        return False


def detect_layout(state: dict, where: str) -> str:
    """``videomae`` or ``marlin`` from a state dict's marker keys; a clear error otherwise."""
    if any(k in state for k in videomae.MARKERS):
        return "videomae"
    if any(k in state for k in marlin.MARKERS):
        return "marlin"
    if any(k in state for k in _HF_MARKERS):
        raise ValueError(f"{where} holds Hugging Face VideoMAE weights: give the folder with its config.json")
    raise ValueError(f"{where}: unknown checkpoint layout. Expected {EXPECTED}. Found {describe_keys(state)}")


def read_source(path: str | Path, from_format: str = "auto", overrides: Overrides | None = None) -> Converted:
    """Read ``path`` as an FMAE model; ``from_format`` (one of :data:`FORMATS`, or ``auto``)
    skips the detection. Raises ``FileNotFoundError`` for a missing path and ``ValueError``
    for one in no known layout."""
    over = overrides or Overrides()
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path} (weights load from local paths only)")
    if from_format not in ("auto", *FORMATS):
        raise ValueError(f"unknown source format {from_format!r}; choose auto or one of {FORMATS}")
    if from_format == "hf" or (from_format == "auto" and is_hf_folder(path)):
        if not is_hf_folder(path):
            raise ValueError(f"{path} is not a Hugging Face folder (expected a folder with config.json)")
        return read_hf(path, over)
    if from_format == "fmae" or (from_format == "auto" and _is_fmae(path)):
        loaded = load_model(path)
        source = {"format": "fmae", "path": str(loaded.path), "notes": []}
        if config_path(loaded.path).is_file() and isinstance(read_meta(loaded.path).get("source"), dict):
            source["converted_from"] = read_meta(loaded.path)["source"]  # weights that fmae.convert wrote
        return Converted(loaded.model, loaded.has_decoder, source)
    if path.is_dir():
        raise ValueError(
            f"{path}: a folder in no known layout. Expected {EXPECTED}. "
            f"Found {describe_keys(p.name for p in path.iterdir())}"
        )
    state, layout = find_state_dict(load_tensor_file(path), str(path))
    fmt = detect_layout(state, str(path)) if from_format == "auto" else from_format
    reader = videomae.read_videomae if fmt == "videomae" else marlin.read_marlin
    converted = reader(state, path, over)
    if layout:
        converted.source["found_under"] = layout
    return converted
