"""Face-video preprocessing of a folder: every video through the face pass, into a cache with a manifest.

:func:`preprocess` turns a folder of videos ``SRC`` into a cache ``OUT`` that mirrors
it; :func:`fmae.data.face_pass.process_video` does one video (decode, track one face or every
face, crop, parse into regions: :mod:`fmae.data.face_pass` says how, and what each status
means). The cache, which :mod:`fmae.data` reads::

    OUT/<rel dir>/<stem>.avi           face crops, size × size RGB, MJPEG in AVI (DALI's CPU
                                       and GPU decoders read it), one per source frame, at
                                       the source's frame rate
    OUT/<rel dir>/<stem>.regions.npz   (unless ``regions`` is off)
                                       regions   uint8 [T, S, S]  FaceRegion ids per crop, in
                                                                  chunks (fmae.data.region_maps)
                                       boxes     float32 [T, 4]   crop window x0, y0, x1, y1 in
                                                                  source pixels (may overhang)
                                       has_face  bool [T]         a face was detected in the frame
    OUT/manifest.jsonl                 one JSON record per processed video (see below)
    OUT/<label files>                  SRC's .csv/.txt/.tsv/.json/.xls(x) files, copied

so a DAiSEE folder stays a DAiSEE-layout folder (:class:`fmae.data.VideoClipDataset`
reads the cache as it reads the source).

With ``workers > 1`` each process holds its own backend. A worker process that dies
(a crash inside a decoder or a model) takes its pool down; the videos that were in
flight are retried one at a time, so only the culprit is recorded as ``error``.

Manifest records (one JSON object per line) hold ``source`` (path relative to SRC),
``status``, ``message``, ``video`` and ``regions`` (relative to OUT, ``null`` when not
written), ``frames``, ``fps``, ``width``, ``height``, ``face_frames``,
``frames_without_face``, ``missing_face_ranges`` (``[start, stop)`` frame ranges),
``unparsed_frames`` (beyond the gap rule), ``truncated``, ``boxes`` (mean window and
side range), ``seconds``, and what identifies the work: ``config`` (digest of
:class:`PreprocessConfig`), ``backend``, ``source_size``, ``source_mtime_ns``, ``rank``
and ``time``. With ``--faces all`` a video's record has ``video`` and ``regions``
``null`` and instead ``tracks`` (the table's path), ``people`` (how many),
``dropped_people`` (brief ones left out) and ``persons`` (each person's ``person``,
``video``, ``regions``); its ``face_frames`` counts the frames with anyone in them.
Before it, one row per person with the same ``time``: ``source``, ``person``
(``person-NN``), ``status`` ``ok``, ``video``, ``regions``, and that person's
``face_frames``, ``frames_without_face``, ``missing_face_ranges``, ``unparsed_frames``
and ``boxes`` (:func:`read_people`). A video is processed again only if the newest
record for it is missing, is ``error``, or was made from another file version or config
(or, with ``retry``, is not ``ok``); an ``ok`` video whose files are gone is redone too.
Records are only ever appended: one ``os.write`` per line, a single writer per file
(``manifest.jsonl``, or ``manifest-rank<r>.jsonl`` per rank when sharded, so machines
sharing a file system never write the same file). :func:`read_manifest` merges them,
newest record winning. A run holds OUT's lock (its rank's, when sharded:
:func:`fmae.runtime.lock.folder_lock`) while it works, so a second run into the same OUT
is refused instead of doing the same videos again beside it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from fmae.data.clips import VIDEO_SUFFIXES
from fmae.data.face_pass import STATUSES, PreprocessConfig, _describe, process_video
from fmae.data.people import TRACKS, people_folder, person_files
from fmae.data.region_maps import region_map_path
from fmae.data.synthetic import SyntheticConfig, ensure_synthetic_daisee, pretraining_set
from fmae.face.backend import FaceBackend, backend_factory, register_backend
from fmae.runtime.files import out_of_room, write_atomically
from fmae.runtime.lock import folder_lock

log = logging.getLogger(__name__)

LABEL_SUFFIXES: tuple[str, ...] = (".csv", ".txt", ".tsv", ".json", ".xlsx", ".xls")
MANIFEST = "manifest.jsonl"


# ------------------------------------------------------------------------ folders


def find_videos(src: str | Path, exclude: str | Path | None = None) -> list[PurePosixPath]:
    """Video files under ``src`` (by suffix, case-insensitive), as sorted relative paths.

    Hidden files and folders are skipped, and so is ``exclude`` (the output folder,
    when it lies inside ``src``).
    """
    return _walk(src, VIDEO_SUFFIXES, exclude)


def _walk(src: str | Path, suffixes: tuple[str, ...], exclude: str | Path | None) -> list[PurePosixPath]:
    src = Path(src)
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (skip is None or (Path(folder) / d).resolve() != skip)
        )
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                found.append(PurePosixPath((Path(folder) / name).relative_to(src).as_posix()))
    return sorted(found)


def output_video_path(out: str | Path, rel: PurePosixPath) -> Path:
    """``OUT/<rel dir>/<stem>.avi``, the cache file of source video ``rel``."""
    return Path(out) / rel.parent / f"{rel.stem}.avi"


def shard(items: list, rank: int, world_size: int) -> list:
    """Item ``i`` goes to rank ``i % world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    return items[rank::world_size]


def copy_label_files(src: str | Path, out: str | Path) -> list[PurePosixPath]:
    """Copy SRC's label files (:data:`LABEL_SUFFIXES`) to the same places under OUT.

    A file already there with the same size and modification time is left alone.
    Returns the relative paths copied.
    """
    src, out = Path(src), Path(out)
    copied = []
    for rel in _walk(src, LABEL_SUFFIXES, out):
        a, b = src / rel, out / rel
        sa = a.stat()
        if b.exists() and (b.stat().st_size, b.stat().st_mtime_ns) == (sa.st_size, sa.st_mtime_ns):
            continue
        write_atomically(b, lambda tmp: shutil.copy2(a, tmp))
        copied.append(rel)
    return copied


def manifest_path(out: str | Path, rank: int = 0, world_size: int = 1) -> Path:
    """The manifest file this rank appends to: ``manifest.jsonl``, or ``manifest-rank<r>.jsonl`` when sharded."""
    return Path(out) / (MANIFEST if world_size == 1 else f"manifest-rank{rank}.jsonl")


def _manifest_rows(out: str | Path):
    """Every record of OUT's manifest files (``manifest*.jsonl``), in file order; a line that
    does not parse (a write cut short by a kill) is skipped with a warning."""
    for path in sorted(Path(out).glob("manifest*.jsonl")):
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict) or "source" not in rec or "time" not in rec:
                if line.strip():
                    log.warning("%s:%d: skipping a line that is not a manifest record", path, n)
                continue
            yield rec


def read_manifest(out: str | Path) -> dict[str, dict]:
    """``{source: newest record}`` over all of OUT's manifest files (``manifest*.jsonl``): one
    record per video (the rows of ``--faces all``'s people are :func:`read_people`'s).

    A line that does not parse (a write cut short by a kill) is skipped with a warning.
    """
    records: dict[str, dict] = {}
    for rec in _manifest_rows(out):
        source = rec["source"]
        if "person" not in rec and (source not in records or rec["time"] >= records[source]["time"]):
            records[source] = rec
    return records


def read_people(out: str | Path) -> dict[str, list[dict]]:
    """``{source: [person rows]}``: the people of each video whose newest record (:func:`read_manifest`)
    was made with ``--faces all``, in person order. Rows of earlier runs are left out."""
    newest = {source: rec["time"] for source, rec in read_manifest(out).items() if rec.get("tracks")}
    people: dict[str, list[dict]] = {source: [] for source in newest}
    for rec in _manifest_rows(out):
        if "person" in rec and newest.get(rec["source"]) == rec["time"]:
            people[rec["source"]].append(rec)
    return {source: sorted(rows, key=lambda r: r["person"]) for source, rows in people.items()}


def _append(path: Path, record: dict) -> None:
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # after a write cut short (a kill, a full disk): start a fresh line
        rest = memoryview(line)
        while rest:  # a short write (the disk filling up) goes on, so that its error is raised
            rest = rest[os.write(fd, rest) :]
    finally:
        os.close(fd)


def _is_done(rec: dict | None, stat: os.stat_result, digest: str, out: Path, retry: bool) -> bool:
    if (
        rec is None
        or rec.get("config") != digest
        or (rec.get("source_size"), rec.get("source_mtime_ns")) != (stat.st_size, stat.st_mtime_ns)
    ):
        return False
    if rec["status"] == "ok" and rec.get("tracks"):  # --faces all: the table and every person's files
        files = [rec["tracks"], *(p[k] for p in rec.get("persons", ()) for k in ("video", "regions") if p.get(k))]
        return all((out / f).is_file() for f in files)
    if rec["status"] == "ok":
        # A crops-only cache (regions off: part of the digest) records no region maps.
        return bool(rec.get("video")) and all((out / rec[k]).is_file() for k in ("video", "regions") if rec.get(k))
    return rec["status"] in ("no_face", "too_many_faces", "unreadable", "empty") and not retry


# ------------------------------------------------------------------------ runs

_WORKER_BACKEND: FaceBackend | None = None


def _init_worker(config: PreprocessConfig, factory) -> None:
    global _WORKER_BACKEND
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the processes
    register_backend(config.backend, factory)  # a spawned process starts with the default registry
    _WORKER_BACKEND = config.create_backend()


def _run_one(src: Path, video_out: Path, config: PreprocessConfig, backend: FaceBackend | None = None) -> dict:
    """:func:`process_video`, with any exception turned into an ``error`` record but a
    write that failed for want of room (:func:`fmae.runtime.files.out_of_room`), which is raised."""
    try:
        return process_video(src, video_out, backend or _WORKER_BACKEND, config)
    except Exception as e:  # one file must never end the run
        if out_of_room(e):
            raise
        log.debug("%s failed", src, exc_info=True)
        return {"status": "error", "message": _describe(e)}


@dataclass
class _Run:
    """What a :func:`preprocess` run's stages share: where and how it works, and its tallies."""

    src: Path
    out: Path
    config: PreprocessConfig
    rank: int
    manifest: Path
    digest: str
    counts: dict[str, int]
    bar: tqdm | None = None

    def record(self, rel: PurePosixPath, stat: os.stat_result, rec: dict) -> None:
        """Complete a video's record with what identifies the work, append it to the manifest, count it.

        With ``--faces all`` a row per person (its ``person``, files and face fields) goes first,
        with the same identifying fields and ``time``, and the video's record lists the people's
        files under ``persons`` beside ``tracks``."""
        target = output_video_path(self.out, rel)
        ok = rec["status"] == "ok"
        persons = rec.pop("persons", None)
        one = ok and persons is None
        work = dict(
            config=self.digest,
            backend=self.config.backend,
            source_size=stat.st_size,
            source_mtime_ns=stat.st_mtime_ns,
            rank=self.rank,
            time=time.time(),
        )
        rec.update(
            source=rel.as_posix(),
            video=target.relative_to(self.out).as_posix() if one else None,
            regions=region_map_path(target).relative_to(self.out).as_posix() if one and self.config.regions else None,
            **work,
        )
        if persons is not None:
            folder = people_folder(target).relative_to(self.out)
            files = [person_files(folder, p["person"], self.config.regions) for p in persons]
            for p, f in zip(persons, files):
                _append(self.manifest, {"source": rel.as_posix(), "status": "ok", "message": "", **p, **f, **work})
            rec.update(tracks=(folder / TRACKS).as_posix(), persons=files)
        _append(self.manifest, rec)
        self.counts[rec["status"]] += 1
        if not ok:
            log.warning("%s: %s: %s", rel, rec["status"], rec["message"])
        self.bar.update()


def _check_folders(src: Path, out: Path) -> None:
    """Refuse a ``src`` that is not a folder, or an ``out`` that is ``src`` itself."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder")
    if src.resolve() == out.resolve():
        raise ValueError("OUT must differ from SRC (the cache would overwrite the videos)")


def _prepare_out(src: Path, out: Path, rank: int) -> None:
    """Create ``out``; rank 0 copies the label files into it."""
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        copy_label_files(src, out)


def _pending(run: _Run, videos: list[PurePosixPath], done: dict[str, dict], retry: bool) -> deque:
    """The ``(rel, stat)`` tasks still to do; records the videos that cannot be, counts those already done."""
    tasks, owners = deque(), {}
    for rel in videos:
        target = output_video_path(run.out, rel)
        try:
            # Stat before processing: a file replaced meanwhile is then redone next run.
            stat = (run.src / rel).stat()
        except OSError as e:
            problem = f"cannot stat: {_describe(e)}"
        else:
            problem = (
                f"its cache file {target.name} is also {owners[target]}'s; rename one" if target in owners else None
            )
        if problem:
            run.counts["error"] += 1
            _append(
                run.manifest, {"source": rel.as_posix(), "status": "error", "message": problem, "time": time.time()}
            )
            log.warning("%s: error: %s", rel, problem)
            continue
        owners[target] = rel.as_posix()
        if _is_done(done.get(rel.as_posix()), stat, run.digest, run.out, retry):
            run.counts["skipped"] += 1
        else:
            tasks.append((rel, stat))
    return tasks


def _progress_bar(total: int, skipped: int, progress: bool) -> tqdm:
    """The run's tqdm bar, starting at the videos already done."""
    return tqdm(
        total=total,
        initial=skipped,
        unit="video",
        desc="preprocess",
        disable=not progress,
        dynamic_ncols=True,
    )


def _process(run: _Run, tasks: deque, workers: int) -> None:
    """Process the tasks, in this process (``workers <= 1``) or in a pool, recording each."""
    config, src, out = run.config, run.src, run.out
    if workers <= 1:
        with config.create_backend() as backend:
            for rel, stat in tasks:
                run.record(rel, stat, _run_one(src / rel, output_video_path(out, rel), config, backend))
    else:
        config.create_backend().close()  # fail here, clearly, rather than in every worker
        _run_pool(tasks, workers, config, src, out, run.record)


def preprocess(
    src: str | Path,
    out: str | Path,
    config: PreprocessConfig | None = None,
    workers: int = 1,
    rank: int = 0,
    world_size: int = 1,
    retry: bool = False,
    progress: bool = True,
    take_turns: bool = False,
) -> dict[str, int]:
    """Preprocess every video under ``src`` into the cache ``out`` (see :mod:`fmae.data.preprocess`).

    config: :class:`PreprocessConfig` (default one if ``None``); workers: processes
    (each with its own face backend; ``<= 1`` runs in this process); rank, world_size:
    this machine's share of the sorted video list (video ``i`` goes to rank
    ``i % world_size``); retry: also redo videos whose newest status is ``no_face``,
    ``unreadable`` or ``empty``; progress: a tqdm bar; take_turns: wait for another run that
    holds ``out`` (this rank's share of it) to finish, instead of raising
    ``FolderInUseError`` (:func:`fmae.runtime.lock.folder_lock`). Rank 0 copies the label files.

    Returns ``{status: count}`` over this rank's videos, with ``skipped`` for those
    already done. Raises ``FileNotFoundError`` if ``src`` is not a folder,
    ``ValueError`` for bad arguments, ``ImportError`` if the backend cannot load,
    ``OSError`` when a write fails for want of room; a bad video never raises.
    """
    config = config or PreprocessConfig()
    src, out = Path(src), Path(out)
    _check_folders(src, out)
    videos = shard(find_videos(src, exclude=out), rank, world_size)
    with folder_lock(out, f"rank{rank}" if world_size > 1 else "", wait=take_turns):
        _prepare_out(src, out, rank)
        digest, done = config.digest(), read_manifest(out)
        counts = {s: 0 for s in (*STATUSES, "skipped")}
        run = _Run(src, out, config, rank, manifest_path(out, rank, world_size), digest, counts)
        tasks = _pending(run, videos, done, retry)
        run.bar = _progress_bar(len(videos), counts["skipped"], progress)
        _process(run, tasks, workers)
        run.bar.close()
    log.info("preprocess %s → %s: %s", src, out, ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    return counts


def _run_pool(tasks: deque, workers: int, config: PreprocessConfig, src: Path, out: Path, record) -> None:
    """Process ``tasks`` in ``workers`` spawned processes, surviving workers that die.

    A process that dies (a crash in a decoder or a model) breaks the whole pool and every
    video in flight with it. Those videos are retried one at a time in a fresh pool: the
    one that breaks it again alone is recorded as ``error``; the others finish normally.
    """
    context = multiprocessing.get_context("spawn")  # MediaPipe's and torch's threads do not survive fork
    suspects: deque = deque()
    pool, inflight = None, {}  # future -> (task, submitted alone)

    def submit(task, alone: bool) -> None:
        rel, _ = task
        inflight[pool.submit(_run_one, src / rel, output_video_path(out, rel), config)] = (task, alone)

    try:
        while tasks or suspects or inflight:
            if pool is None:
                pool = ProcessPoolExecutor(
                    workers,
                    mp_context=context,
                    initializer=_init_worker,
                    initargs=(config, backend_factory(config.backend)),
                )
            if suspects:
                if not inflight:
                    submit(suspects.popleft(), alone=True)
            else:
                while tasks and len(inflight) < 2 * workers:
                    submit(tasks.popleft(), alone=False)
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                task, alone = inflight.pop(future)
                try:
                    record(*task, future.result())
                except BrokenProcessPool:
                    broken = True
                    if alone:
                        record(
                            *task,
                            {
                                "status": "error",
                                "message": "the worker process died on this video (a crash in the decoder or a model)",
                            },
                        )
                    else:
                        suspects.append(task)
            if broken:
                suspects.extend(task for task, _ in inflight.values())
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def prepared_root(
    data_root: str | os.PathLike,
    img_size: int,
    *,
    workers: int = 1,
    progress: bool = True,
    synthetic: SyntheticConfig | None = None,
) -> Path:
    """The data set every command reads: ``data_root`` when given, else the built-in
    synthetic face videos, preprocessed like real data.

    The synthetic videos (generated once; ``synthetic``, default
    :func:`fmae.data.synthetic.pretraining_set` at ``img_size``) go through the same face pipeline as a user's
    recordings (:func:`preprocess` with the default :class:`PreprocessConfig`: track, crop to
    ``img_size``, parse into regions), into a cache beside them that later runs reuse.
    ``FileNotFoundError`` if ``data_root`` is given but is not a folder.
    """
    if data_root:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data_root {root} is not a folder")
        return root
    raw = ensure_synthetic_daisee(config=synthetic or pretraining_set(img_size), workers=max(1, workers))
    # The built-in set goes through the default (keyframe) pass, twice as fast on its clips; the
    # every-frame cache that runs before 2026-12-07 read stays under its old name.
    config = PreprocessConfig(size=img_size)
    faces = raw.parent / f"{raw.name}-faces{img_size}-k{config.keyframes}"
    # Runs started together (torchrun's ranks, parallel sweeps) take turns: the first makes the cache.
    counts = preprocess(raw, faces, config, workers=max(1, workers), progress=progress, take_turns=True)
    if counts.get("ok", 0) + counts.get("skipped", 0) == 0:
        raise RuntimeError(f"preprocessing the synthetic set into {faces} gave no usable clip: {counts}")
    return faces
