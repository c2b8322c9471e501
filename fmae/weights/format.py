"""Weights on disk: an encoder, a whole model or a probe as ``NAME.safetensors`` plus ``NAME.json``.

The ``.safetensors`` file holds the tensors (no pickle, so loading runs no code); the
JSON file beside it says what they are::

    {"kind": "fmae-encoder", "format_version": 2, "config": {...}}

and, for weights converted from another implementation (:mod:`fmae.interop`), where
they came from (``"source": {...}``). The tensors file's metadata holds a SHA-256 over
that JSON (as data: its spacing does not count) and every tensor (:data:`DIGEST_KEY`),
so a file torn, corrupted or edited after it was written is refused, with the reason,
never loaded as something else; files of ``format_version`` 1, written before the
digest, still load, with a warning that they cannot be checked. For an encoder (kind ``fmae-encoder``) or a whole
autoencoder (``fmae-model``: the encoder and the decoder) the config is
:meth:`fmae.model.FMAEConfig.to_dict`; for a probe it is whatever the probe's owner
stores (:func:`fmae.downstream.head.save_probe`). Weights load from local paths only:
nothing is ever downloaded.

An exported encoder holds the patch embedding, the transformer blocks and the final
norm — what :meth:`fmae.model.FMAE.forward_features` uses — not the decoder.
:func:`load_encoder` and :func:`load_model` also read a pre-training checkpoint or a
run folder, so every tool takes any of them. Checkpoints of other implementations
(Hugging Face VideoMAE, the original VideoMAE / VideoMAE V2, MARLIN) come in through
``python -m fmae.convert``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

from fmae.model import FMAE, FMAEConfig
from fmae.runtime.files import write_json, write_tensors
from fmae.weights.checkpoint import content_digest, load_checkpoint, load_latest_valid

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""2: the tensors file carries the digest of the JSON and the tensors (:data:`DIGEST_KEY`); 1: it does not."""
DIGEST_KEY = "fmae_sha256"
ENCODER_KIND = "fmae-encoder"
MODEL_KIND = "fmae-model"
"""The whole autoencoder, encoder and decoder (:func:`save_model`)."""
ENCODER_PREFIXES: tuple[str, ...] = ("patch_embed.", "blocks.", "norm.", "fc_norm.", "pos_embed")
"""State-dict keys of the encoder; the rest of :class:`fmae.model.FMAE` is the decoder.
(``fc_norm`` and a saved ``pos_embed`` exist only in some converted models.)"""
_FOREIGN_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_CONVERT_HINT = "convert it first: python -m fmae.convert SRC OUT.safetensors"


def config_path(path: str | os.PathLike) -> Path:
    """The JSON file that describes the weights at ``path``: same name, ``.json``."""
    return Path(path).with_suffix(".json")


def _local_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path} (weights load from local files only; nothing is downloaded)")
    return path


def save_weights(
    path: str | os.PathLike,
    module: nn.Module | dict[str, torch.Tensor],
    kind: str,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a module's state dict (or a dict of tensors) to ``path`` and ``{kind,
    format_version, config, **extra}`` to :func:`config_path` (``path``); returns ``path``.

    ``config`` and ``extra`` (e.g. ``{"source": ...}``) must be JSON-serialisable. Both
    files are written beside each other, each atomically and tensors last, so a present
    ``.safetensors`` is whole and always has its JSON.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights go to a .safetensors file, got {path}")
    tensors = module.state_dict() if isinstance(module, nn.Module) else module
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": kind, "format_version": FORMAT_VERSION, "config": config, **(extra or {})}
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    digest = _digest(json.loads(json.dumps(meta)), cpu)  # the JSON as it reads back: tuples are lists
    write_json(config_path(path), meta)
    return write_tensors(path, cpu, {DIGEST_KEY: digest})


def _digest(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    return content_digest(json.dumps(meta, sort_keys=True), tensors)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON beside the weights at ``path`` (:func:`config_path`): ``{kind,
    format_version, config, ...}``. ``FileNotFoundError`` when it is missing,
    ``ValueError`` when it is not a JSON object."""
    meta_file = config_path(path)
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} has no {meta_file.name} beside it: not weights exported by fmae.weights")
    try:
        meta = json.loads(meta_file.read_text())
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{meta_file} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_file} holds {json.dumps(meta)[:40]}, not a JSON object")
    return meta


def load_weights(
    path: str | os.PathLike, kind: str | tuple[str, ...], device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights written by :func:`save_weights` as ``(tensors, config)``.

    ``kind`` is the kind expected, or a tuple of kinds accepted. Raises
    ``FileNotFoundError`` for a missing file or JSON sidecar, ``ValueError`` when the
    file is not safetensors, when the JSON and the tensors are not those written together
    (their digest differs: torn, corrupted or edited), or when the JSON names another
    kind, a newer format or no config.
    """
    path = _local_file(path)
    meta = read_meta(path)
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {version!r}; this fmae reads 1 to {FORMAT_VERSION}")
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get(DIGEST_KEY)
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a torn or foreign file
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from e
    if stored is not None:
        if stored != _digest(meta, tensors):
            raise ValueError(
                f"{path} and {config_path(path).name} are not what was written together (their SHA-256 "
                "differs): one is corrupt, torn or edited; use an intact copy, or export the weights again"
            )
    elif version >= 2:
        raise ValueError(f"{path} lacks the digest that format_version {version} files carry: it is not whole")
    else:
        log.warning("%s was written before weights carried a digest (format_version 1): it cannot be checked", path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if meta.get("kind") not in kinds:
        expected = " or ".join(map(repr, kinds))
        raise ValueError(f"{path} holds {meta.get('kind')!r} weights, expected {expected}")
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{config_path(path)} holds no config object")
    return {k: v.to(device) for k, v in tensors.items()}, meta["config"]


def encoder_state(model: FMAE) -> dict[str, torch.Tensor]:
    """The encoder's tensors of ``model`` (:data:`ENCODER_PREFIXES`), by state-dict key."""
    return {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)}


def fingerprint(model: FMAE) -> str:
    """16 hex digits of a SHA-256 over the encoder's config and tensors: equal for equal
    encoders whatever file they came from (used to key cached features)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for key, tensor in sorted(encoder_state(model).items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def save_encoder(model: FMAE, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Export ``model``'s encoder to ``path`` (``.safetensors``) and its config to the JSON
    beside it (with ``extra``, e.g. ``{"source": ...}``, at its top level)."""
    if not isinstance(model, FMAE):
        raise TypeError(f"model must be an fmae.model.FMAE, got {type(model).__name__}")
    return save_weights(path, encoder_state(model), ENCODER_KIND, model.config.to_dict(), extra)


def save_model(model: FMAE, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Export the whole autoencoder, encoder and decoder (kind ``fmae-model``), as
    :func:`save_encoder` does the encoder; :func:`load_model` reads it back."""
    if not isinstance(model, FMAE):
        raise TypeError(f"model must be an fmae.model.FMAE, got {type(model).__name__}")
    return save_weights(path, model.state_dict(), MODEL_KIND, model.config.to_dict(), extra)


def _encoder_from(state: dict[str, torch.Tensor], config: dict[str, Any], source: Path) -> FMAE:
    try:
        model = FMAE(FMAEConfig.from_dict(config))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: bad model config: {e}") from e
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
    missing = sorted(set(encoder_state(model)) - set(encoder))
    if missing:
        raise ValueError(f"{source} lacks encoder tensors {missing[:3]}{'…' if len(missing) > 3 else ''}")
    try:
        model.load_state_dict(encoder, strict=False)
    except RuntimeError as e:  # shape mismatch against the config
        raise ValueError(f"{source}: tensors do not fit the model config: {e}") from e
    return model.eval()


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> FMAE:
    """An :class:`fmae.model.FMAE` in eval mode whose encoder holds the weights at ``path``.

    ``path`` is an exported encoder (:func:`save_encoder`) or model (:func:`save_model`,
    which is also what ``python -m fmae.convert`` writes), a pre-training checkpoint, or
    a pre-training run's folder (its ``out_dir`` or ``checkpoints/`` folder: the newest
    checkpoint that verifies). The decoder of an exported encoder is freshly
    initialised (it was not exported): use
    :meth:`~fmae.model.FMAE.forward_features` — ``clip`` float ``[B, C, T, H, W]``,
    normalised as FMAE's loaders do, → ``[B, N, D]`` tokens (``pool=False``) or ``[B, D]``.
    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a file that is
    none of these (a foreign checkpoint's error says how to convert it).
    """
    return load_model(path, device).model


class LoadedModel(NamedTuple):
    model: FMAE
    """In eval mode."""
    has_decoder: bool
    """``False`` for an exported encoder, whose decoder is untrained."""
    path: Path
    """The file read: for a run folder, its newest checkpoint that verifies."""


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """From a pre-training checkpoint, run folder or exported model the whole
    autoencoder; from an exported encoder the encoder with an untrained decoder.
    ``path`` and errors as :func:`load_encoder`; a run folder's checkpoint is read (and
    verified) once."""
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            raise ValueError(f"{path} looks like a Hugging Face model folder, not FMAE weights; {_CONVERT_HINT}")
        checkpoints = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = load_latest_valid(checkpoints)
        if found is None:
            raise FileNotFoundError(f"{checkpoints} holds no valid pre-training checkpoint (ckpt-<step>.safetensors)")
        path, ckpt = found
    else:
        path = _local_file(path)
        if path.suffix in _FOREIGN_SUFFIXES:
            raise ValueError(f"{path} is not FMAE weights (FMAE reads .safetensors only, no pickle); {_CONVERT_HINT}")
        if config_path(path).is_file():
            state, config = load_weights(path, (ENCODER_KIND, MODEL_KIND))
            if read_meta(path)["kind"] == MODEL_KIND:
                return LoadedModel(_whole_model_from(state, config, path).to(device), True, path)
            return LoadedModel(_encoder_from(state, config, path).to(device), False, path)
        try:
            ckpt = load_checkpoint(path)
        except ValueError as e:  # CorruptCheckpointError: torn, foreign or not safetensors at all
            raise ValueError(
                f"{e}; nor is it an exported encoder (no {config_path(path).name} beside it); "
                f"for another implementation's weights, {_CONVERT_HINT}"
            ) from e
    trainer = ckpt.get("trainer")
    if not isinstance(trainer, dict) or "model" not in trainer or "model_config" not in ckpt:
        raise ValueError(f"{path} is an FMAE checkpoint without a pre-trained model (keys {sorted(ckpt)})")
    return LoadedModel(_whole_model_from(trainer["model"], ckpt["model_config"], path).to(device), True, path)


def _whole_model_from(state: dict[str, torch.Tensor], config: dict[str, Any], source: Path) -> FMAE:
    model = _encoder_from(state, config, source)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # a decoder that does not fit the file's own config
        raise ValueError(f"{source}: the decoder's tensors do not fit the model config: {e}") from e
    return model.eval()
