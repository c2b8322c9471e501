"""Checkpoints as safetensors: every tensor of a nested state in the file's tensors, the
rest (numbers, strings, structure) as JSON in its metadata. No pickle anywhere, so a
checkpoint cannot run code when it is loaded.

Files are written to a temporary name in the same folder and renamed, so a crash while
writing leaves the previous checkpoint intact; a SHA-256 of the contents in the
metadata catches a file torn or corrupted later, and :func:`load_latest_valid` then
falls back to the previous good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fmae.runtime.files import naming, save_tensors

log = logging.getLogger(__name__)

_TENSOR_REF = "__tensor__"
_STEP_FILE = re.compile(r"^ckpt-(\d{8})\.safetensors$")


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in ``obj`` by a reference to its key in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        # safetensors refuses tensors that share memory; a contiguous copy is cheap at save time.
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR_REF: key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"checkpoint dict keys must be str or int, got {[type(k) for k in obj]}")
        # int keys (optimiser state) are kept apart from str keys so they load back as ints.
        return {"__dict__": [[k, _split(v, f"{prefix}.{k}" if prefix else str(k), tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR_REF in obj:
            return tensors[obj[_TENSOR_REF]]
        return {k: _join(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def content_digest(structure: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over ``structure`` and every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(structure.encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read back as it was written."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts/lists of tensors, numbers, strings) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_split(state, "", tensors))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_tensors(tmp, tensors, metadata={"fmae_state": structure, "sha256": content_digest(structure, tensors)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise naming(err, tmp, path) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Only safetensors are read (no pickle, so no code runs). Raises
    :class:`CorruptCheckpointError` for a file that is not a readable FMAE checkpoint
    or whose contents do not match their recorded SHA-256.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises several types for a torn or foreign file
        raise CorruptCheckpointError(f"{path} is not a readable safetensors checkpoint: {err}") from err
    if "fmae_state" not in metadata:
        raise CorruptCheckpointError(f"{path} is not an FMAE checkpoint (no 'fmae_state' metadata)")
    if metadata.get("sha256") != content_digest(metadata["fmae_state"], tensors):
        raise CorruptCheckpointError(f"{path} is corrupt: its contents do not match their SHA-256")
    return _join(json.loads(metadata["fmae_state"]), {k: v.to(device) for k, v in tensors.items()})


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.safetensors"


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or ``None``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if _STEP_FILE.match(p.name))
    return found[-1] if found else None


def load_latest_valid(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``folder`` that loads and verifies, with its state.

    Corrupt or foreign files are skipped with a warning; ``None`` when none is good.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted((p for p in folder.iterdir() if _STEP_FILE.match(p.name)), reverse=True):
        try:
            return path, load_checkpoint(path, device)
        except CorruptCheckpointError as err:
            log.warning("skipping checkpoint: %s", err)
    return None


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints in ``folder``, and temporary files
    that a killed writer left behind (call it between writes, not during one)."""
    found = sorted(p for p in Path(folder).iterdir() if _STEP_FILE.match(p.name))
    for old in found[: max(0, len(found) - keep)]:
        old.unlink(missing_ok=True)
    for partial in Path(folder).glob(".ckpt-*.tmp"):
        partial.unlink(missing_ok=True)


def training_settings(path: str | Path) -> dict[str, Any]:
    """The ``fmae.train`` settings stored in a pre-training checkpoint (its metadata only,
    no tensors read); ``{}`` for other files."""
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["fmae_state"])
        config = dict(state["__dict__"])["config"]
        return {k: v for k, v in config["__dict__"]}
    except Exception:  # exported weights, or a checkpoint written before the config was stored
        return {}
