"""Where the set lives and how it gets there once: :func:`ensure_synthetic_daisee` writes
it under ``<root>/daisee-<config hash>/`` (:func:`default_root`) on first use and reuses it
after.

A set is written into a hidden temporary folder beside its final place, named after the
writing process, and renamed into place only when finished; the rename is the lock, so an
interrupted run never looks done, and the leftovers of a killed writer are removed by the
next caller.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from fmae.data.synthetic.config import SyntheticConfig, pretraining_set
from fmae.data.synthetic.writer import is_complete, write_dataset

log = logging.getLogger(__name__)


def default_root() -> Path:
    """``$FMAE_DATA`` if set, else ``$XDG_CACHE_HOME/fmae/synthetic`` (``~/.cache/fmae/synthetic``)."""
    if os.environ.get("FMAE_DATA"):
        return Path(os.environ["FMAE_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "fmae" / "synthetic"


def _partial_prefix(final: Path) -> str:
    return f".{final.name}.partial-"


def _remove_abandoned(final: Path) -> None:
    """Delete half-written sets whose writing process is gone (killed mid-way)."""
    prefix = _partial_prefix(final)
    for tmp in final.parent.glob(prefix + "*"):
        pid = tmp.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def ensure_synthetic_daisee(
    root: str | Path | None = None, config: SyntheticConfig | None = None, workers: int = 1
) -> Path:
    """The synthetic set for ``config`` (default :func:`pretraining_set`), generated on first use
    by ``workers`` processes (the same files for any count).

    Returns ``<root>/daisee-<config.digest()>``, a DAiSEE-layout folder (see
    :mod:`fmae.data.clips`) with a ``manifest.json``; ``root`` defaults to
    :func:`default_root`. The set is written into a hidden temporary folder beside it
    and renamed into place only when finished, so an interrupted run never looks done;
    leftovers of killed runs are removed. Concurrent callers may both generate; the
    first rename wins and the other's copy is discarded.
    """
    config = config or pretraining_set()
    base = Path(root).expanduser() if root is not None else default_root()
    final = base / f"daisee-{config.digest()}"
    if is_complete(final, config):
        return final
    if final.exists():
        raise FileExistsError(
            f"{final} exists but is not a complete synthetic set for this config; delete it to regenerate"
        )
    base.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(final)}{os.getpid()}-", dir=base))
    n = config.num_subjects * config.clips_per_subject
    log.info(
        "generating %d synthetic clips (%d frames, %dx%d) into %s",
        n,
        config.num_frames,
        config.size,
        config.size,
        final,
    )
    try:
        write_dataset(tmp, config, workers)
        try:
            tmp.rename(final)
        except OSError:
            if not is_complete(final, config):
                raise
            shutil.rmtree(tmp)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
