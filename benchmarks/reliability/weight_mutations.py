"""Seeded mutations of weight files: a safetensors file's bytes and header, and the JSON beside it.

The kinds (:data:`KINDS`), each drawn from a ``random.Random``:

- ``bitflip``, ``truncate``, ``splice``: as for videos, on the tensors file or its JSON;
- ``tensor_header``: one edit of a safetensors header, written back consistently (the
  8-byte length fixed): a tensor's dtype, shape or data offsets, a tensor renamed,
  dropped or duplicated, the ``__metadata__`` (digest, checkpoint state) changed or removed;
- ``json_value``: one edit of the JSON sidecar as data: a number, string or flag changed, a
  key removed or added, a list shortened, the document replaced by another JSON value.

:func:`mutate_file` returns the new bytes and a one-line description.
"""

from __future__ import annotations

import json
import random
import struct
from typing import Any, NamedTuple

KINDS: tuple[str, ...] = ("bitflip", "truncate", "splice", "tensor_header", "json_value")
_DTYPES = ("F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "X")


class Edited(NamedTuple):
    data: bytes
    detail: str


def _bitflip(data: bytes, rng: random.Random) -> Edited:
    out = bytearray(data)
    flips = rng.choice((1, rng.randint(2, 8), rng.randint(9, 64)))
    header_end = min(len(out), 8 + _header_length(data)) if _header_length(data) else min(len(out), 512)
    start, end = (0, header_end) if rng.random() < 0.5 else (0, len(out))
    for _ in range(flips):
        out[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    return Edited(bytes(out), f"{flips} bits flipped in bytes [{start}, {end})")


def _truncate(data: bytes, rng: random.Random) -> Edited:
    cut = rng.randrange(len(data)) if data else 0
    return Edited(data[:cut], f"cut at byte {cut} of {len(data)}")


def _splice(data: bytes, rng: random.Random, other: bytes) -> Edited:
    head, tail = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
    return Edited(data[:head] + other[tail:], f"bytes [0, {head}) + another file's from byte {tail}")


def _header_length(data: bytes) -> int:
    """A safetensors file's header length (the first 8 bytes, little-endian), 0 if implausible."""
    if len(data) < 8:
        return 0
    n = struct.unpack("<Q", data[:8])[0]
    return n if 8 + n <= len(data) else 0


def split_safetensors(data: bytes) -> tuple[dict, bytes] | None:
    """``(header as a dict, the tensors' bytes)`` of a safetensors file, or ``None``."""
    n = _header_length(data)
    try:
        header = json.loads(data[8 : 8 + n]) if n else None
    except ValueError:
        return None
    return (header, data[8 + n :]) if isinstance(header, dict) else None


def join_safetensors(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads its header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + body


def _tensor_header(data: bytes, rng: random.Random) -> Edited:
    parts = split_safetensors(data)
    if parts is None:
        return _bitflip(data, rng)
    header, body = parts
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    how = rng.choice(("dtype", "shape", "offsets", "rename", "drop", "duplicate", "metadata"))
    if how == "dtype":
        entry["dtype"] = rng.choice([d for d in _DTYPES if d != entry["dtype"]])
        detail = f"{name}: dtype {entry['dtype']}"
    elif how == "shape":
        shape = list(entry["shape"])
        choice = rng.choice(("swap", "double", "drop", "add", "zero", "negative"))
        if choice == "swap" and len(shape) > 1:
            shape[0], shape[-1] = shape[-1], shape[0]
        elif choice == "double" and shape:
            shape[rng.randrange(len(shape))] *= 2
        elif choice == "drop" and shape:
            shape.pop()
        elif choice == "zero" and shape:
            shape[0] = 0
        elif choice == "negative" and shape:
            shape[0] = -shape[0]
        else:
            shape.append(1)
        entry["shape"] = shape
        detail = f"{name}: shape {shape} ({choice})"
    elif how == "offsets":
        start, end = entry["data_offsets"]
        shift = rng.choice((1, 4, -4, end - start, len(body), 1 << 40))
        entry["data_offsets"] = [start + shift, end + shift] if rng.random() < 0.5 else [end, start]
        detail = f"{name}: data_offsets {entry['data_offsets']}"
    elif how == "rename":
        header[name + rng.choice(("_", ".x", "s"))] = header.pop(name)
        detail = f"{name} renamed"
    elif how == "drop":
        del header[name]
        detail = f"{name} dropped"
    elif how == "duplicate":
        other = rng.choice(names)
        header[name] = dict(header[other])
        detail = f"{name} points at {other}'s bytes"
    else:
        return _metadata(header, body, rng)
    return Edited(join_safetensors(header, body), detail)


def _metadata(header: dict, body: bytes, rng: random.Random) -> Edited:
    """An edit of ``__metadata__``: a value changed (a checkpoint's state as JSON data), a key
    removed or added, or all of it removed."""
    meta = header.get("__metadata__") or {}
    if not meta or rng.random() < 0.2:
        header.pop("__metadata__", None)
        return Edited(join_safetensors(header, body), "__metadata__ removed")
    key = rng.choice(sorted(meta))
    how = rng.choice(("value", "remove", "char"))
    if how == "remove":
        del meta[key]
        detail = f"__metadata__[{key}] removed"
    elif how == "char" or not _is_json(meta[key]):
        text = meta[key]
        at = rng.randrange(len(text)) if text else 0
        meta[key] = text[:at] + rng.choice('0af{}[]",') + text[at + 1 :]
        detail = f"__metadata__[{key}]: character {at} changed"
    else:
        edited = _json_value(json.loads(meta[key]), rng)
        meta[key] = json.dumps(edited.value)
        detail = f"__metadata__[{key}]: {edited.detail}"
    header["__metadata__"] = meta
    return Edited(join_safetensors(header, body), detail)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class _Value(NamedTuple):
    value: Any
    detail: str


def _leaves(doc: Any, path: tuple = ()) -> list[tuple]:
    """Paths (key and index tuples) to every value inside ``doc``, containers included."""
    found = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _leaves(v, (*path, i))
    return found


def _changed(value: Any, rng: random.Random) -> Any:
    """Another value of the same kind (mostly) or of another kind."""
    if isinstance(value, bool):
        return rng.choice((not value, 1, "true", None))
    if isinstance(value, int):
        return rng.choice((value + 1, value - 1, value * 2, -value, 0, 1 << 62, float(value) + 0.5, str(value), None))
    if isinstance(value, float):
        return rng.choice((value * 2, -value, 0.0, value + 1e-3, 1e308, int(value), str(value), None))
    if isinstance(value, str):
        return rng.choice((value + "x", "", value.upper(), value[::-1], 7, None, [value]))
    if isinstance(value, list):
        return rng.choice((value[:-1], [*value, value[-1] if value else 0], [], {}, None))
    return rng.choice(([], "", 0, None))


def _json_value(doc: Any, rng: random.Random) -> _Value:
    how = rng.choice(("change", "change", "change", "remove", "add", "replace"))
    paths = _leaves(doc)
    if how == "replace" or len(paths) == 1:
        new = rng.choice(([], "weights", 0, None, [doc]))
        return _Value(new, f"the document replaced by {json.dumps(new)[:40]}")
    path = rng.choice(paths[1:])
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    where = "/".join(map(str, path))
    if how == "remove":
        del parent[last]
        return _Value(doc, f"{where} removed")
    if how == "add" and isinstance(parent, dict):
        parent[f"{last}_extra"] = rng.choice((1, "x", None))
        return _Value(doc, f"{where}_extra added")
    old = parent[last]
    parent[last] = _changed(old, rng)
    return _Value(doc, f"{where}: {json.dumps(old)[:40]} -> {json.dumps(parent[last])[:40]}")


def _json_sidecar(data: bytes, rng: random.Random) -> Edited:
    try:
        doc = json.loads(data)
    except ValueError:
        return _bitflip(data, rng)
    edited = _json_value(doc, rng)
    return Edited((json.dumps(edited.value, indent=1) + "\n").encode(), edited.detail)


def mutate_file(kind: str, data: bytes, rng: random.Random, other: bytes, is_json: bool) -> Edited:
    """``data`` (a JSON sidecar when ``is_json``, else a safetensors file) broken in the way
    ``kind`` names; ``other`` is another file of the same kind, for splices. ``tensor_header``
    on a JSON file and ``json_value`` on a tensors file edit what that file holds instead."""
    if kind == "bitflip":
        return _bitflip(data, rng)
    if kind == "truncate":
        return _truncate(data, rng)
    if kind == "splice":
        return _splice(data, rng, other)
    if kind in ("tensor_header", "json_value"):
        return _json_sidecar(data, rng) if is_json else _tensor_header(data, rng)
    raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(KINDS)}")
