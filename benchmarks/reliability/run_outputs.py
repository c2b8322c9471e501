"""What a run left in its output folder, in a form that two runs' folders compare by.

:func:`content` reads one file the way its users read it, less what legitimately differs
between two runs of the same command (the output folder's own path, wall-clock times):

- ``.json``: the parsed value without ``seconds``, ``time`` and ``clips_per_s``;
- ``.jsonl`` (append-only logs: ``manifest.jsonl``, ``metrics.jsonl``): the newest record
  per ``source`` or ``step``, as their readers take them, likewise; a line that does not
  parse is kept as such, so a torn line shows as a difference;
- ``.yaml``, ``.csv``, ``.md``, ``.txt``: the text;
- a checkpoint (``ckpt-<step>.safetensors``): loaded and verified
  (:func:`fmae.weights.checkpoint.load_checkpoint`), every tensor as its dtype, shape and bytes;
- anything else (crops, region maps, features, images): the bytes.

Hidden files and folders (the lock, writers' temporaries) and TensorBoard's ``tb/`` (wall
times in every event) are not outputs here; :func:`temporaries` lists what killed writers
left behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from fmae.weights.checkpoint import CorruptCheckpointError, load_checkpoint

VOLATILE = frozenset({"seconds", "time", "clips_per_s"})
"""Record keys that hold wall-clock times."""
SKIPPED_FOLDERS = frozenset({"tb"})
_CHECKPOINT = re.compile(r"^ckpt-\d{8}\.safetensors$")
_TEXT = (".yaml", ".csv", ".md", ".txt")


def visible_files(folder: Path) -> list[str]:
    """The outputs under ``folder``: relative POSIX paths of files not hidden and not in ``tb/``."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts) and rel.parts[0] not in SKIPPED_FOLDERS:
            found.append(rel.as_posix())
    return sorted(found)


def temporaries(folder: Path) -> list[str]:
    """Hidden ``*.tmp`` files under ``folder``: what writers killed mid-write left behind."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*.tmp"))


def _plain(value: Any, folder: str) -> Any:
    """``value`` with tensors as ``(dtype, shape, bytes)``, wall times dropped and ``folder`` as ``<out>``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        return (str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if isinstance(value, dict):
        return {k: _plain(v, folder) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, (list, tuple)):
        return [_plain(v, folder) for v in value]
    if isinstance(value, str):
        return value.replace(folder, "<out>")
    return value


def _records(text: str, folder: str) -> dict[Any, Any]:
    newest: dict[Any, Any] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line)
            key = record.get("step", record.get("source"))
        except (ValueError, AttributeError):
            newest[("unparsable line", n)] = line
            continue
        newest[key] = _plain(record, folder)
    return newest


def content(path: Path, folder: Path) -> Any:
    """``path`` (a file under the output folder ``folder``) as it compares: see the module docstring."""
    where = str(folder)
    if _CHECKPOINT.match(path.name):
        try:
            return _plain(load_checkpoint(path), where)
        except CorruptCheckpointError as err:
            return f"corrupt checkpoint: {err}".replace(where, "<out>")
    if path.suffix == ".json":
        try:
            return _plain(json.loads(path.read_text()), where)
        except ValueError as err:
            return f"unparsable JSON: {err}"
    if path.suffix == ".jsonl":
        return _records(path.read_text(errors="replace"), where)
    if path.suffix in _TEXT:
        return path.read_text(errors="replace").replace(where, "<out>")
    return path.read_bytes()


def differences(out: Path, reference: Path) -> dict[str, list[str]]:
    """How a finished run's folder ``out`` differs from ``reference``'s: ``missing`` (outputs
    lost), ``extra`` and ``differs`` (files whose :func:`content` is not the reference's)."""
    mine, theirs = set(visible_files(out)), set(visible_files(reference))
    return {
        "missing": sorted(theirs - mine),
        "extra": sorted(mine - theirs),
        "differs": [f for f in sorted(mine & theirs) if content(out / f, out) != content(reference / f, reference)],
    }


def partial_files(out: Path, reference: Path) -> list[str]:
    """After a kill: the outputs present in ``out`` that a reader would take as finished but
    that are not what the uninterrupted run wrote (append-only logs are compared only on
    the records they hold so far)."""
    bad = []
    for f in visible_files(out):
        mine, ref = out / f, reference / f
        if not ref.is_file():
            bad.append(f)
        elif f.endswith(".jsonl"):
            have, want = _records(mine.read_text(errors="replace"), str(out)), content(ref, reference)
            if any(key not in want or want[key] != record for key, record in have.items()):
                bad.append(f)
        elif content(mine, out) != content(ref, reference):
            bad.append(f)
    return bad
