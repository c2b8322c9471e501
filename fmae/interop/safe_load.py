"""Reading other implementations' weight files without running code from them.

``.safetensors`` files hold tensors and no code. ``.pt``, ``.pth``, ``.bin`` and ``.ckpt``
files are pickles: they are read with ``torch.load(weights_only=True)``, whose unpickler
builds only tensors and plain containers. Training checkpoints often hold other objects
beside the weights (the original VideoMAE saves its ``args``, an ``argparse.Namespace``).
Their class names are listed without unpickling anything
(``torch.serialization.get_unsafe_globals_in_checkpoint``) and each is given an inert
stand-in of ours, allowed for that one load, so the file loads with placeholders in their
place and none of its classes or functions is imported or called.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
STATE_DICT_WRAPPERS = ("state_dict", "model", "module", "model_state", "model_state_dict")
"""Keys under which training code nests its weights, tried in this order."""


class Inert:
    """Stands in for an object of a class that may not be imported while loading: takes
    any arguments and state, keeps none, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _stand_in(name: str) -> tuple[Any, str]:
    # A dict subclass (Lightning's AttributeDict, ...) is filled item by item after it is
    # made, which torch's unpickler allows only on a plain (Ordered)dict.
    if name.rsplit(".", 1)[-1].lower().endswith("dict"):
        return OrderedDict, name
    return type(f"Inert[{name}]", (Inert,), {}), name


def _reason(err: Exception) -> str:
    """One line of why torch could not read a file: its unpickler's own reason where it gives
    one (its message around it advises loading with ``weights_only=False``, which would run
    the file's code: not advice to pass on), else the first line of the message."""
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\n\s*\n|$)", str(err), re.S)
    text = found.group(1) if found else (str(err).strip().splitlines() or [type(err).__name__])[0]
    return " ".join(text.split())


def load_pickle(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``, with inert stand-ins (:class:`Inert`) for
    the classes and functions it names beyond tensors and containers."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        serialization = torch.serialization
        if not hasattr(serialization, "get_unsafe_globals_in_checkpoint"):  # torch < 2.5
            raise ValueError(
                f"{path} holds more than weights and this torch cannot read it safely: {_reason(first)}"
            ) from first
        try:
            names = serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a zip archive: garbage, or torch's pre-1.6 format
            names = []
        if not names:
            raise ValueError(f"{path} is not a readable PyTorch file: {_reason(first)}") from first
        try:
            with serialization.safe_globals([_stand_in(n) for n in names]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"{path} cannot be read without running code from it ({_reason(err)}). If you trust it, save its "
                f"weights alone, e.g. torch.save(torch.load(SRC, weights_only=False)['model'], 'weights.pt')"
            ) from err
    except Exception as err:  # a damaged zip or pickle fails in torch's reader in many ways (KeyError, EOFError…)
        raise ValueError(f"{path} is not a readable PyTorch file: {type(err).__name__}: {_reason(err)}") from err


def load_tensor_file(path: str | Path) -> Any:
    """The object saved in ``path``: a dict of tensors for ``.safetensors``, whatever was
    pickled (read as :func:`load_pickle` does) for ``.pt``/``.pth``/``.bin``/``.ckpt``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if path.suffix in PICKLE_SUFFIXES:
        return load_pickle(path)
    raise ValueError(
        f"{path}: unknown weights file type {path.suffix!r}; expected .safetensors or one of "
        f"{', '.join(PICKLE_SUFFIXES)}"
    )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def find_state_dict(obj: Any, where: str) -> tuple[dict[str, torch.Tensor], str]:
    """The weights in a loaded file: ``obj`` itself when it is a dict of tensors, else the
    first of :data:`STATE_DICT_WRAPPERS` that holds one (recursively), with a leading
    ``module.`` (DistributedDataParallel) removed. Returns ``(state, how)``, ``how`` saying
    where it was found (``""`` at the top)."""
    path: list[str] = []
    while True:
        # A wrapper first: a state dict's values are tensors, never dicts (a checkpoint may hold both).
        inner = next((k for k in STATE_DICT_WRAPPERS if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
        if inner is None and _is_state_dict(obj):
            break
        if inner is None:
            found = sorted(map(str, obj))[:12] if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(
                f"{where} holds no weights: expected a dict of tensors, or one under "
                f"{' / '.join(repr(k) for k in STATE_DICT_WRAPPERS)}; found {found}"
            )
        path.append(inner)
        obj = obj[inner]
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
        path.append("module.")
    return state, "/".join(path)
