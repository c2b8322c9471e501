"""Files that are never seen half-written (JSON and safetensors among them), and digests of settings."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
"""``errno`` of a write that failed for want of room: a full disk, a quota, a file-size limit."""

# How safetensors' Rust code reports an I/O failure: "... I/O error: File too large (os error 27)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_path)``, then rename ``tmp_path`` to ``path``: a killed or
    concurrent writer never leaves ``path`` partial. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, so a folder walk never mistakes it for a finished file; pid-unique, so two
    # writers never share one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise naming(err, tmp, path) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_temporaries(path: str | os.PathLike) -> None:
    """Delete what writers of ``path`` (:func:`write_atomically`) killed mid-write left beside it.
    Only for ``path``'s one writer (it holds the folder's lock): another's work would go too."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def out_of_room(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for want of room (:data:`NO_ROOM`): no fault of
    the input at hand, so a run that records bad inputs and goes on must stop on it instead."""
    return isinstance(err, OSError) and err.errno in NO_ROOM


def naming(err: OSError, tmp: str | os.PathLike, path: str | os.PathLike) -> OSError:
    """``err``, saying ``path`` where it says the temporary file ``tmp`` that was to become it:
    the error a user reads names the file they asked for."""
    if err.filename is None or os.fspath(err.filename) != os.fspath(tmp) or err.errno is None:
        return err
    return OSError(err.errno, err.strerror, os.fspath(path))


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """safetensors' ``save_file`` (not atomic: see :func:`write_tensors`), with a failed write (a
    full disk) raised as the ``OSError`` that Python's own writes raise, not as ``SafetensorError``."""
    try:
        save_file(tensors, os.fspath(path), metadata=metadata)
    except SafetensorError as err:
        found = _RUST_OS_ERROR.search(str(err))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), os.fspath(path)) from err


def write_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """``tensors`` (and string ``metadata``) as a safetensors file, written atomically. Returns ``path``."""
    return write_atomically(path, lambda tmp: save_tensors(tmp, tensors, metadata))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as indented JSON (one space, a final newline), written atomically. Returns ``path``."""
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def digest(settings: Any, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``settings`` as sorted JSON (values
    JSON cannot write are written as ``str``): the same settings always give the same name."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:length]
