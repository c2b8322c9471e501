"""Engagement over time for a new recording: face pipeline, sliding windows, encoder, probe.

The pipeline that :func:`run_predict` drives (and ``python -m fmae.predict`` exposes):

1. **Predictor** (:func:`load_predictor`): a probe written by :func:`fmae.downstream.probe.run_probe`
   and the encoder it was trained on (:func:`fmae.weights.load_encoder`). The encoder
   must be that very one: its :func:`fmae.weights.fingerprint` must equal the probe's
   ``encoder_fingerprint``, else the probe's weights would be read against features
   they never saw.
2. **Faces** (:func:`find_faces`): the recording goes through the project's face
   pipeline (:func:`fmae.data.face_pass.process_video`, MediaPipe, crops of the
   encoder's ``img_size``), as the probe's training clips did, but without parsing the
   crops into regions, which the encoder does not read; it keeps every source frame
   and says per frame whether a face was found (``has_face``). With ``faces="all"``
   (``--faces all``) every person gets that (:func:`fmae.downstream.windows.people_pass`:
   the multi-face tracking of :mod:`fmae.face.multi_tracking`, as ``preprocess`` and
   ``extract`` run it), and everything below is done per person.
3. **Windows** (:func:`score_windows`): windows of ``num_frames × temporal_stride``
   source frames (the probe's clip sampling) start every ``hop`` seconds. A window
   whose fraction of face frames is below ``min_face`` is ``no_face``: it is reported
   as such, never guessed (the face pipeline's crop there is a held box with no face
   in it). Every other window is encoded (:meth:`fmae.model.FMAE.forward_features`)
   and probed with :func:`fmae.downstream.scores.score_items`'s rule: class probabilities
   (softmax) or a score clamped to [0, 1].
4. **Outputs** in ``out_dir``: ``timeline.csv`` (:func:`write_timeline_csv`),
   ``timeline.png`` (:func:`save_timeline_png`), ``summary.json``
   (:func:`timeline_summary`) and ``report.html`` (:mod:`fmae.downstream.report`: a thumbnail,
   the timeline and the summary per person, in one self-contained page). With
   ``--faces all``: ``timeline.csv`` gains a last column ``person``
   (:func:`write_people_csv`; only then, so that one-face readers and files stay as they
   were), ``timeline.png`` has a row per person (:func:`save_people_png`), ``summary.json``
   an entry per person under ``persons`` and the recording's ``status`` (``ok``,
   ``no_face``, ``too_many_faces``: recorded, not raised), and ``tracks.csv`` is the face
   pass's (:mod:`fmae.data.people`), so that ``person`` joins the two.

Without a video, :func:`run_predict` predicts a generated demo recording
(:func:`fmae.data.synthetic.render_segments`, :data:`DEMO_LEVELS`) whose true
segments it draws in the plot and reports beside the prediction.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np
import torch
import yaml

from fmae.data.face_pass import FACES
from fmae.data.people import TRACKS
from fmae.data.synthetic import render_segments
from fmae.data.video_writer import write_video
from fmae.downstream.head import LinearProbe, load_probe
from fmae.downstream.report import PersonSection, write_report
from fmae.downstream.scores import score_items
from fmae.downstream.windows import Faces, encode_windows, find_faces, people_pass, thumbnail, window_starts
from fmae.model import FMAE
from fmae.runtime.config import check_choices, setting
from fmae.runtime.device import DTYPES, resolve_device, resolve_dtype
from fmae.runtime.files import write_atomically
from fmae.weights import fingerprint, load_encoder

log = logging.getLogger(__name__)

NO_FACE = "no_face"
"""The level of a window with too few face frames."""
DEMO_LEVELS: tuple[int, ...] = (3, 1, 0, 3)
"""Engagement levels of the demo recording's segments, in order."""
DEMO_SECONDS = 4.0
"""Length of each demo segment."""


@dataclass
class PredictConfig:
    """Engagement over time for one recording, with a trained probe."""

    probe: str = setting("runs/probe/probe.safetensors", "probe written by python -m fmae.probe (with its .json)")
    checkpoint: str = setting(
        "",
        "the encoder the probe was trained on: pre-training checkpoint or exported encoder; "
        "empty: the file the probe names",
    )
    hop: float = setting(0.0, "seconds between window starts; 0: half a window")
    min_face: float = setting(0.5, "fraction of a window's frames that must show a face; fewer: the window is no_face")
    faces: str = setting(
        "one",
        "one: the face the pipeline follows; all: every person, a timeline each (a person column in timeline.csv, "
        "a row each in timeline.png, tracks.csv of who is where)",
        FACES,
    )
    max_faces: int = setting(8, "with --faces all: most people a video may show; more is the status too_many_faces")
    min_track: float = setting(1.0, "with --faces all: seconds a person must be seen for; briefer faces are dropped")
    batch_size: int = setting(16, "windows per encoder batch")
    dtype: str = setting(
        "auto", "compute dtype of the encoder: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES
    )
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    work_dir: str = setting("", "where the face crops are kept; empty: a temporary folder, deleted after")
    out_dir: str = setting(
        "runs/predict", "where timeline.csv, timeline.png, summary.json, report.html (and tracks.csv) go"
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if self.max_faces < 1 or self.min_track < 0:
            raise ValueError(f"need max_faces >= 1 and min_track >= 0, got {self.max_faces}, {self.min_track}")
        if self.hop < 0:
            raise ValueError(f"hop must be >= 0 seconds (0: half a window), got {self.hop}")
        if not 0 < self.min_face <= 1:
            raise ValueError(f"min_face must be in (0, 1], got {self.min_face}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


# ------------------------------------------------------------------------- predictor


def load_predictor(
    probe_path: str | Path, checkpoint: str | Path = "", device: torch.device | str = "cpu"
) -> tuple[FMAE, LinearProbe, dict[str, Any]]:
    """``(encoder, probe, probe meta)`` in eval mode on ``device``.

    ``checkpoint`` empty takes the encoder file the probe's meta names. Raises
    ``FileNotFoundError`` for missing files and ``ValueError`` when the encoder is not
    the one the probe was trained on (fingerprints differ) or the meta lacks what
    prediction needs.
    """
    probe, meta = load_probe(probe_path, device)
    needed = ("kind", "class_names", "num_frames", "temporal_stride", "encoder_fingerprint")
    missing = [k for k in needed if k not in meta]
    if missing:
        raise ValueError(f"{probe_path}: the probe's meta lacks {missing}; write it with python -m fmae.probe")
    if not checkpoint:
        named = Path(str(meta.get("encoder", "")))
        if not named.is_file():
            raise ValueError(
                f"{probe_path} was trained on {meta.get('encoder')!r}, which is not a file here: "
                "give the encoder with --checkpoint"
            )
        checkpoint = named
    encoder = load_encoder(checkpoint, device)
    found = fingerprint(encoder)
    if found != meta["encoder_fingerprint"]:
        raise ValueError(
            f"{checkpoint} is encoder {found}, but {probe_path} was trained on encoder "
            f"{meta['encoder_fingerprint']} ({meta.get('encoder')}): give the encoder the probe was "
            "trained on"
        )
    return encoder, probe, meta


# --------------------------------------------------------------------------- windows


@dataclass
class Timeline:
    """The probe's verdict on each window of a recording (``W`` windows)."""

    start_s: np.ndarray
    """``float64 [W]``: window start, seconds from the recording's start."""
    end_s: np.ndarray
    """``float64 [W]``: window end (exclusive)."""
    face_fraction: np.ndarray
    """``float64 [W]``: fraction of the window's frames with a face."""
    scores: np.ndarray
    """``float32 [W, C]`` class probabilities (classification) or ``[W]`` scores in [0, 1]
    (regression); NaN for ``no_face`` windows."""
    kind: str
    class_names: list[str]

    @property
    def scored(self) -> np.ndarray:
        """``bool [W]``: the window was scored (not ``no_face``)."""
        return ~np.isnan(self.scores.reshape(len(self.scores), -1)[:, 0])

    def levels(self) -> list[str]:
        """Each window's predicted class name (classification), or :data:`NO_FACE`; for a
        regression, the score as text."""
        out = []
        for scored, s in zip(self.scored, self.scores):
            if not scored:
                out.append(NO_FACE)
            elif self.kind == "classification":
                out.append(self.class_names[int(np.argmax(s))])
            else:
                out.append(f"{float(s):.4f}")
        return out


def window_plan(
    meta: dict[str, Any], num_frames: int, fps: float, hop: float = 0.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(starts int64 [W], offsets int64 [num_frames of a clip], span)``: windows of
    ``span = clip frames × temporal_stride`` source frames every ``hop`` seconds (0: half
    a window) over a video of ``num_frames`` frames at ``fps``; a clip takes frames
    ``start + offsets``. ``meta`` is the probe's (``num_frames``, ``temporal_stride``)."""
    stride, n = int(meta["temporal_stride"]), int(meta["num_frames"])
    span = n * stride
    return window_starts(num_frames, span, hop_frames(span, fps, hop)), stride * np.arange(n, dtype=np.int64), span


def hop_frames(span: int, fps: float, hop: float = 0.0) -> int:
    """Frames between window starts: ``hop`` seconds at ``fps``, or (``hop`` 0) half of ``span``; at least one."""
    return max(1, round(hop * fps)) if hop > 0 else max(1, span // 2)


def score_windows(
    encoder: FMAE,
    probe: LinearProbe,
    meta: dict[str, Any],
    faces: Faces,
    *,
    hop: float = 0.0,
    min_face: float = 0.5,
    batch_size: int = 16,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> Timeline:
    """Slide the probe's clip window over ``faces`` and score every window that shows a face.

    Windows come from :func:`window_plan`. A window with a face in fewer than
    ``min_face`` of its frames is ``no_face`` (NaN scores) and is not encoded; the
    others are encoded (:func:`encode_windows`) and probed with
    :func:`fmae.downstream.scores.score_items`.
    """
    starts, offsets, span = window_plan(meta, len(faces.has_face), faces.fps, hop)
    cumulative = np.concatenate([[0], np.cumsum(faces.has_face)])
    fraction = (cumulative[starts + span] - cumulative[starts]) / span
    rows = np.flatnonzero(fraction >= min_face) if faces.crops is not None else np.zeros(0, np.int64)
    shape = (len(starts), len(meta["class_names"])) if meta["kind"] == "classification" else (len(starts),)
    scores = np.full(shape, np.nan, np.float32)
    if len(rows):
        features = encode_windows(
            encoder,
            faces.crops,
            starts[rows],
            offsets,
            batch_size=batch_size,
            dtype=dtype,
            pool=meta.get("pool", "mean"),
            progress=progress,
        )
        scores[rows] = score_items(probe, features[:, None], meta["kind"]).numpy()
    return Timeline(
        starts / faces.fps, (starts + span) / faces.fps, fraction, scores, meta["kind"], list(meta["class_names"])
    )


# --------------------------------------------------------------------------- outputs


def timeline_columns(kind: str, class_names: Sequence[str]) -> list[str]:
    """``timeline.csv``'s columns: ``start_s, end_s, face_fraction``, then ``level, confidence,
    p_<class>…`` (classification) or ``score`` (regression)."""
    scores = ["level", "confidence", *[f"p_{c}" for c in class_names]] if kind == "classification" else ["score"]
    return ["start_s", "end_s", "face_fraction", *scores]


def timeline_rows(timeline: Timeline) -> list[list[str]]:
    """One row of :func:`timeline_columns` per window, as text (confidence is the top
    probability); ``no_face`` windows have level ``no_face`` and empty scores."""
    classify = timeline.kind == "classification"
    rows = []
    for start, end, frac, level, scored, s in zip(
        timeline.start_s,
        timeline.end_s,
        timeline.face_fraction,
        timeline.levels(),
        timeline.scored,
        timeline.scores,
    ):
        row = [f"{start:.3f}", f"{end:.3f}", f"{frac:.3f}"]
        if classify:
            row += [level, f"{s.max():.4f}", *[f"{q:.4f}" for q in s]] if scored else [NO_FACE, "", *[""] * len(s)]
        else:
            row.append(level)
        rows.append(row)
    return rows


def write_timeline_csv(timeline: Timeline, path: str | Path) -> None:
    """One row per window (:func:`timeline_columns`, :func:`timeline_rows`)."""
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(timeline_columns(timeline.kind, timeline.class_names))
        w.writerows(timeline_rows(timeline))


def write_people_csv(timelines: dict[str, Timeline], path: str | Path, kind: str, class_names: Sequence[str]) -> None:
    """``timeline.csv`` of ``--faces all``: every person's windows, person by person, with a last
    column ``person`` (the name in ``tracks.csv``). Last, as in ``python -m fmae.extract``'s
    index, so that the columns before it are those of a one-face timeline. No people: the header alone."""
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*timeline_columns(kind, class_names), "person"])
        for person, timeline in timelines.items():
            w.writerows(row + [person] for row in timeline_rows(timeline))


def _spans(mask: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> list[tuple[float, float]]:
    """Time spans covered by runs of consecutive True windows."""
    spans, i = [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j + 1 < len(mask) and mask[j + 1]:
                j += 1
            spans.append((float(start_s[i]), float(end_s[j])))
            i = j
        i += 1
    return spans


def _pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, imported when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _draw_timeline(ax, timeline: Timeline, truth: Sequence[tuple[float, float, int]] | None = None) -> None:
    """Draw ``timeline`` on the matplotlib axes ``ax`` (see :func:`save_timeline_png`), without title or legend."""
    classify = timeline.kind == "classification"
    centre = (timeline.start_s + timeline.end_s) / 2
    scored = timeline.scored
    for k, (a, b) in enumerate(_spans(~scored, timeline.start_s, timeline.end_s)):
        ax.axvspan(a, b, color="0.85", zorder=0, label="no face" if k == 0 else None)
    if truth and classify:
        xs = [x for a, b, _ in truth for x in (a, b)]
        ys = [y for _, _, level in truth for y in (level, level)]
        ax.plot(xs, ys, "--", color="tab:green", lw=1.5, label="true level")
    if classify:
        value = np.where(scored, np.nan_to_num(timeline.scores).argmax(1), np.nan)
        ax.plot(centre, value, "-o", ms=3, lw=1, color="tab:blue", label="predicted level")
        ax.set_yticks(range(len(timeline.class_names)), timeline.class_names)
        ax.set_ylim(-0.5, len(timeline.class_names) - 0.5)
    else:
        ax.plot(centre, timeline.scores, "-o", ms=3, lw=1, color="tab:blue", label="predicted score")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("engagement score")
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, float(timeline.end_s.max()))


def _figure_width(windows: int) -> float:
    return max(6.0, min(16.0, 0.02 * windows + 6))


def save_timeline_png(
    timeline: Timeline,
    path: str | Path | BinaryIO,
    title: str = "",
    truth: Sequence[tuple[float, float, int]] | None = None,
) -> None:
    """Plot the level (class index, named on the axis) or score of each window over time,
    each at its centre; spans of ``no_face`` windows shaded grey; ``truth`` segments
    ``(start_s, end_s, level)`` as a dashed line when known (classification only: a
    level has no place on a score axis). ``path`` may be an open binary file (PNG bytes)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(_figure_width(len(timeline.start_s)), 3.2), dpi=110)
    _draw_timeline(ax, timeline, truth)
    ax.set_title(title or "engagement over time")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_people_png(
    timelines: dict[str, Timeline],
    path: str | Path,
    title: str = "",
    empty: str = "no one seen",
    truth: Sequence[tuple[float, float, int]] | None = None,
) -> None:
    """``timeline.png`` of ``--faces all``: one row per person (:func:`save_timeline_png`'s plot,
    the person's name on the left), one time axis for all; without people, ``empty`` is written
    in the picture, so that the file is never missing or stale."""
    plt = _pyplot()
    rows = max(1, len(timelines))
    windows = max((len(t.start_s) for t in timelines.values()), default=0)
    fig, axes = plt.subplots(rows, 1, figsize=(_figure_width(windows), 0.6 + 2.2 * rows), dpi=110, squeeze=False)
    for ax, (person, timeline) in zip(axes[:, 0], timelines.items()):
        _draw_timeline(ax, timeline, truth)
        ax.set_title(person, loc="left", fontsize="medium")
        # A legend per row: the grey "no face" entry shows only where that person has such spans.
        ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
        if ax is not axes[-1, 0]:
            ax.set_xlabel("")
    if not timelines:
        axes[0, 0].set_axis_off()
        axes[0, 0].text(0.5, 0.5, empty, ha="center", va="center", wrap=True)
    else:
        end = max(float(t.end_s.max()) for t in timelines.values())
        for ax in axes[:, 0]:
            ax.set_xlim(0, end)
    fig.suptitle(title or "engagement over time")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def timeline_summary(timeline: Timeline) -> dict[str, Any]:
    """Counts of windows, the share of scored windows per level (classification) or the
    mean score (regression), and the runs of equal consecutive levels as ``segments``
    (``[start_s, end_s, level]``, overlapping where windows overlap)."""
    levels = timeline.levels()
    scored = timeline.scored
    out: dict[str, Any] = {
        "windows": len(levels),
        "scored_windows": int(scored.sum()),
        "no_face_windows": int((~scored).sum()),
        "duration_s": round(float(timeline.end_s.max()), 3) if len(levels) else 0.0,
    }
    if timeline.kind == "classification":
        picked = [lv for lv, s in zip(levels, scored) if s]
        out["level_share"] = {
            c: round(picked.count(c) / len(picked), 4) if picked else 0.0 for c in timeline.class_names
        }
        runs = levels
    else:
        out["mean_score"] = round(float(np.nanmean(timeline.scores)), 4) if scored.any() else None
        # A regression's runs: scored stretches and no-face stretches.
        runs = ["scored" if s else NO_FACE for s in scored]
    segments: list[list] = []
    for start, end, level in zip(timeline.start_s, timeline.end_s, runs):
        if segments and segments[-1][2] == level:
            segments[-1][1] = round(float(end), 3)
        else:
            segments.append([round(float(start), 3), round(float(end), 3), level])
    out["segments"] = segments
    return out


# ------------------------------------------------------------------------------- run


def render_demo_video(path: str | Path, size: int) -> list[tuple[float, float, int]]:
    """Write the demo recording (:data:`DEMO_LEVELS`, :data:`DEMO_SECONDS` each, ``size²``)
    to ``path``; return its true segments ``(start_s, end_s, level)``."""
    demo = render_segments(DEMO_LEVELS, DEMO_SECONDS, size=size)
    write_video(path, demo.rendered.frames, demo.fps)
    return [(k * DEMO_SECONDS, (k + 1) * DEMO_SECONDS, level) for k, level in enumerate(DEMO_LEVELS)]


@dataclass
class _Person:
    """One person's prediction (the face of a one-face run is one person)."""

    name: str
    faces: Faces
    timeline: Timeline
    thumbnail: np.ndarray | None
    """``uint8 [S, S, 3]``: :func:`fmae.downstream.windows.thumbnail`, read before the crops are deleted."""

    def summary(self) -> dict[str, Any]:
        """The person's ``summary.json`` entry: ``person``, ``frames_with_face`` and :func:`timeline_summary`."""
        return {
            "person": self.name,
            "frames_with_face": int(self.faces.has_face.sum()),
            **timeline_summary(self.timeline),
        }


@dataclass
class _Found:
    """What the face pass and the windows gave, for the outputs."""

    people: list[_Person]
    status: str
    """``ok``, or why no one was scored: ``no_face``, ``too_many_faces``."""
    message: str
    frames: int
    fps: float
    tracks: Path | None
    """The face pass's ``tracks.csv`` (``--faces all``), ``None`` without one."""


def config_yaml(config: PredictConfig) -> str:
    """``config.yaml``'s text; the ``--faces all`` settings only when that is on, so that a one-face
    run writes the very file it wrote before they existed."""
    fields = dataclasses.asdict(config)
    if config.faces == "one":
        fields = {k: v for k, v in fields.items() if k not in ("faces", "max_faces", "min_track")}
    return yaml.safe_dump(fields, sort_keys=False)


def _find_and_score(
    video: Path, work: Path, config: PredictConfig, img_size: int, score: Callable[[Faces], Timeline]
) -> _Found:
    """The face pass over ``video`` (every face with ``--faces all``) into ``work``, crops of
    ``img_size``, and each person's timeline (``score``); thumbnails are read here, while the crops exist."""
    if config.faces == "all":
        found = people_pass(video, work, img_size, config.max_faces, config.min_track)
        people = [_Person(name, faces, score(faces), thumbnail(faces)) for name, faces in found.people.items()]
        return _Found(people, found.status, found.message, found.frames, found.fps, found.tracks)
    faces = find_faces(video, work, img_size)
    seen = bool(faces.has_face.any())
    return _Found(
        [_Person("face", faces, score(faces), thumbnail(faces))],
        "ok" if seen else "no_face",
        "" if seen else "no frame has a face",
        len(faces.has_face),
        faces.fps,
        None,
    )


def run_predict(video: str | Path | None, config: PredictConfig, progress: bool = True) -> dict[str, Any]:
    """Predict engagement over time for ``video`` (``None``: the demo recording, written to
    ``<out_dir>/demo.avi``) and write ``config.yaml``, ``timeline.csv``, ``timeline.png``,
    ``summary.json`` and ``report.html`` (:mod:`fmae.downstream.report`) into ``config.out_dir``;
    with ``--faces all`` every person's (see :func:`write_people_csv`, :func:`save_people_png`)
    and the face pass's ``tracks.csv``. Returns the summary: :func:`timeline_summary` plus the
    inputs (``--faces all``: the recording's ``status``, ``message``, ``people`` and ``tracks``,
    and a ``persons`` entry each), and ``truth`` for the demo.

    Bad input (missing, unreadable or too short a video; a probe that does not fit) raises before
    anything but ``config.yaml`` is written; no face at all and more people than ``max_faces`` are
    recorded (``summary.json``'s ``status``, the report), not raised."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    # Load and check the predictor before the (slow) face pipeline runs.
    encoder, probe, meta = load_predictor(config.probe, config.checkpoint, device)
    out = Path(config.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_yaml(config))
    truth = None
    if video is None:
        video = out / "demo.avi"
        size = max(64, encoder.config.img_size)
        truth = render_demo_video(video, size)
    video = Path(video)

    def score(faces: Faces) -> Timeline:
        return score_windows(
            encoder,
            probe,
            meta,
            faces,
            hop=config.hop,
            min_face=config.min_face,
            batch_size=config.batch_size,
            dtype=dtype,
            progress=progress,
        )

    work = Path(config.work_dir).expanduser() if config.work_dir else Path(tempfile.mkdtemp(prefix="fmae-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log.info("finding faces in %s", video)
        found = _find_and_score(video, work, config, encoder.config.img_size, score)
        # Copied while the work folder exists. A run without one removes an earlier run's,
        # which would pass for this one's.
        if found.tracks is not None:
            write_atomically(out / TRACKS, lambda tmp: shutil.copyfile(found.tracks, tmp))
        else:
            (out / TRACKS).unlink(missing_ok=True)
    finally:
        if not config.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    summary = _write_outputs(out, video, config, meta, found, truth)
    return summary


def _write_outputs(
    out: Path,
    video: Path,
    config: PredictConfig,
    meta: dict[str, Any],
    found: _Found,
    truth: list[tuple[float, float, int]] | None,
) -> dict[str, Any]:
    """Write ``timeline.csv``, ``timeline.png``, ``summary.json`` and ``report.html``; return the summary."""
    summary: dict[str, Any] = {
        "video": str(video),
        "probe": str(config.probe),
        "task": meta.get("task"),
        "kind": meta["kind"],
        "fps": round(float(found.fps), 3),
        "frames": found.frames,
    }
    title = f"{video.name}: {meta.get('task', '')} engagement"
    timelines = {p.name: p.timeline for p in found.people}
    if config.faces == "all":
        summary.update(
            faces="all",
            status=found.status,
            message=found.message,
            people=len(found.people),
            tracks=TRACKS if found.tracks is not None else None,
            persons=[p.summary() for p in found.people],
        )
        write_people_csv(timelines, out / "timeline.csv", meta["kind"], meta["class_names"])
        save_people_png(timelines, out / "timeline.png", title, f"{found.status}: {found.message}", truth)
    else:  # the files of a one-face run, as they were before --faces all
        only = found.people[0]
        summary.update({k: v for k, v in only.summary().items() if k != "person"})
        write_timeline_csv(only.timeline, out / "timeline.csv")
        save_timeline_png(only.timeline, out / "timeline.png", title, truth)
    if truth is not None:
        summary["truth"] = [list(t) for t in truth]
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _write_report(out / "report.html", title, summary, found, truth)
    return summary


def _write_report(
    path: Path, title: str, summary: dict[str, Any], found: _Found, truth: list[tuple[float, float, int]] | None
) -> None:
    """``report.html``: the recording's facts and status, then each person's thumbnail, timeline and summary."""
    facts = [
        ("video", summary["video"]),
        ("probe", f"{summary['probe']} ({summary['task']}, {summary['kind']})"),
        ("frames", f"{summary['frames']} at {summary['fps']:g} fps"),
    ]
    if found.tracks is not None:
        facts.append(("who is where", f"{TRACKS} beside this page"))
    sections = []
    for person in found.people:
        png = io.BytesIO()
        save_timeline_png(person.timeline, png, f"{person.name}: engagement over time", truth)
        sections.append(PersonSection(person.name, person.thumbnail, png.getvalue(), person.summary()))
    write_report(path, title, facts, found.status, found.message, sections)
