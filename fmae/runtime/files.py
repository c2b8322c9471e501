"""Files that are never seen half-written, JSON results, and digests of settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable


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
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as indented JSON (one space, a final newline), written atomically. Returns ``path``."""
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def digest(settings: Any, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``settings`` as sorted JSON (values
    JSON cannot write are written as ``str``): the same settings always give the same name."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:length]
