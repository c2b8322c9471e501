"""The set on disk: every clip as an MJPEG ``.avi`` with its region maps, DAiSEE's label
CSVs and a ``manifest.json`` (:func:`write_dataset`), and the check that a folder holds a
finished set (:func:`is_complete`)."""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fmae.data.clips import LABEL_COLUMNS, SPLITS, label_file
from fmae.data.region_maps import region_map_path, save_region_maps
from fmae.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from fmae.data.synthetic.generate import GeneratedClip, generate_clip
from fmae.data.video_writer import write_video
from fmae.runtime.files import write_json

MANIFEST = "manifest.json"


def write_dataset(out: str | Path, config: SyntheticConfig, workers: int = 1) -> dict:
    """Write every clip, the label CSVs and ``manifest.json`` into ``out``; return the manifest.

    ``workers`` processes draw the clips; each clip comes from its own seeds, so the files are
    the same for any count. The manifest is written last, so its presence marks a finished set.
    """
    out = Path(out)
    jobs = [(out, config, s, c) for s in range(config.num_subjects) for c in range(config.clips_per_subject)]
    if workers > 1:
        # spawn: the caller may hold torch's threads, which do not survive fork
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            written = list(pool.map(_write_one, jobs, chunksize=4))
    else:
        written = [_write_one(job) for job in jobs]
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for split, row, _ in written:
        rows[split].append(row)
    _write_labels(out, rows)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "digest": config.digest(),
        "config": dataclasses.asdict(config),
        "clips": [entry for _, _, entry in written],
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def _write_one(job: tuple[Path, SyntheticConfig, int, int]) -> tuple[str, list, dict]:
    """Draw and write clip ``c`` of ``subject``: its split, label row and manifest entry."""
    out, config, subject, c = job
    g = generate_clip(config, subject, c)
    video = _write_clip(out, g, config)
    entry = {
        "split": g.split,
        "subject": g.subject_id,
        "clip": g.clip_id,
        "engagement": g.engagement,
        "video": video.relative_to(out).as_posix(),
    }
    return g.split, _label_row(g, np.random.default_rng([config.seed, 2, subject, c])), entry


def _write_clip(out: Path, g: GeneratedClip, config: SyntheticConfig) -> Path:
    """The clip's video and region maps in DAiSEE's place for it; returns the video's path."""
    folder = out / "DataSet" / g.split / g.subject_id / g.clip_id
    folder.mkdir(parents=True)
    video = folder / f"{g.clip_id}.avi"
    write_video(video, g.rendered.frames, config.fps, config.qscale)
    save_region_maps(region_map_path(video), g.rendered.regions, landmarks=g.rendered.landmarks, boxes=g.rendered.boxes)
    return video


def _label_row(clip: GeneratedClip, rng: np.random.Generator) -> list:
    # The other three affects loosely follow engagement; nothing reads them but DAiSEE has them.
    e = clip.engagement
    boredom = int(np.clip(3 - e - rng.integers(0, 2), 0, 3))
    confusion = int(rng.integers(0, 2)) if e in (1, 2) else 0
    frustration = int(rng.integers(0, 2)) if e == 0 else 0
    return [f"{clip.clip_id}.avi", boredom, e, confusion, frustration]


def _write_labels(out: Path, rows: dict[str, list]) -> None:
    """``Labels/<split>Labels.csv`` of every split, DAiSEE's columns first."""
    (out / "Labels").mkdir()
    for split in SPLITS:
        with label_file(out, split).open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(LABEL_COLUMNS)
            writer.writerows(rows[split])


def is_complete(path: str | Path, config: SyntheticConfig) -> bool:
    """Whether ``path`` holds a finished set for ``config``: its manifest has the config's
    digest and every video and region map it lists exists."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("digest") != config.digest():
        return False
    return all(
        (path / c["video"]).is_file() and region_map_path(path / c["video"]).is_file() for c in manifest["clips"]
    )
