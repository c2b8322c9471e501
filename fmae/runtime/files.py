"""Files that are never seen half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


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
