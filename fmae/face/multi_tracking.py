"""Every face over time: the detections of a whole recording grouped into people, each with one identity.

A lesson recording shows many faces: a gallery of webcam tiles that the meeting software
reorders, or a classroom row of students who turn away, leave and come back. Given each
frame's face boxes and appearance descriptors (:func:`fmae.face.identity.face_descriptor`),
:func:`track_people` says which person each detection is, in three steps:

1. **duplicates**: two detections of one frame that overlap more than ``duplicate_iou``
   are one face; the smaller is dropped;
2. **tracklets** (:func:`link_tracklets`): frame by frame, detections continue the
   tracklets seen in the last ``max_miss + 1`` frames, matched one to one by the Hungarian
   method (``scipy.optimize.linear_sum_assignment``) on ``(1 - IoU) + appearance
   distance``; a pair links only where the boxes overlap (IoU at least ``min_iou``) *and*
   the faces look alike (distance at most ``link_distance``), so two tiles that swap
   places break their tracklets instead of trading them. A detection left over starts a
   tracklet;
3. **identities** (:func:`group_tracklets`): the tracklets are merged into people by
   appearance alone, closest pair first (centroid linkage on the tracklets' mean
   descriptors), as long as the pair is at most ``merge_distance`` apart and never seen
   in the same frame (one person cannot be in two places). The merged groups are the
   gallery of seen identities: a person who turned away, left or moved to another tile
   comes back into the group of their earlier tracklets, wherever it is in the video.

People seen in fewer than ``min_frames`` frames are dropped (their detections get no
person), not guessed: a passer-by, a face on a poster seen for a moment, a false
detection. The rest are numbered by first appearance (ties left to right). Working on the
whole recording (preprocessing decodes it twice anyway) makes the identities independent
of the order in which people appear.

A live source (``python -m fmae.predict --live``) has no whole recording: :class:`LivePeople`
decides as the frames come, with the same tracklets (:class:`TrackletLinker`, the step of
:func:`link_tracklets`) and a greedy version of step 3 (a new tracklet joins the nearest person
not on screen within ``merge_distance``, for good).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from fmae.face.identity import descriptor_distance


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become people; the distances sit between what real faces measure (see
    :mod:`fmae.face.identity`: one person in consecutive frames at most 0.30 apart, two
    people in one frame at least 0.57, their mean looks at least 0.53)."""

    max_miss: int = 12
    """Frames a tracklet may go without a detection and still be continued by position."""
    min_iou: float = 0.2
    """Overlap with a tracklet's last box that a detection needs to continue it."""
    link_distance: float = 0.45
    """Appearance distance above which a detection never continues a tracklet (a tile swap)."""
    merge_distance: float = 0.45
    """Appearance distance up to which two groups of tracklets may be one person."""
    min_frames: int = 24
    """People detected in fewer frames are dropped."""
    duplicate_iou: float = 0.5
    """Two detections of one frame overlapping more than this are one face."""
    appearance_rate: float = 0.3
    """Weight of a new detection in a tracklet's running appearance (exponential average)."""

    def __post_init__(self) -> None:
        if self.max_miss < 0 or self.min_frames < 1:
            raise ValueError(f"need max_miss >= 0 and min_frames >= 1, got {self.max_miss}, {self.min_frames}")
        for name in ("min_iou", "duplicate_iou", "appearance_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.link_distance <= 0 or self.merge_distance <= 0:
            raise ValueError("link_distance and merge_distance must be > 0")


class Tracklets(NamedTuple):
    """Detections linked over consecutive frames (:func:`link_tracklets`); ``M`` tracklets."""

    ids: list[np.ndarray]
    """Per frame ``int64 [N_t]``: the tracklet of each detection, ``-1`` for a duplicate."""
    frames: list[np.ndarray]
    """Per tracklet ``int64 [n]``: the frames it was detected in, ascending."""
    mean: np.ndarray
    """``float64 [M, D]``: each tracklet's mean descriptor."""
    first_box: np.ndarray
    """``float64 [M, 4]``: each tracklet's first box (to number people left to right)."""


class People(NamedTuple):
    """Who each detection of a recording is (:func:`track_people`)."""

    person: list[np.ndarray]
    """Per frame ``int64 [N_t]``: the person of each detection in ``[0, count)``, ``-1`` for none
    (a duplicate, or a person seen too briefly)."""
    score: list[np.ndarray]
    """Per frame ``float32 [N_t]``: cosine similarity of the detection's descriptor to its
    person's mean appearance (1: typical of that person; lower: less sure), ``NaN`` for none."""
    count: int
    """Number of people."""
    tracklets: int
    """Number of tracklets the people were grouped from."""
    dropped: int
    """Groups dropped for being seen in fewer than ``min_frames`` frames."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``float64 [n, m]``: intersection over union of boxes ``float [n, 4]`` and ``float [m, 4]`` (x0, y0, x1, y1)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _check(boxes: Sequence[np.ndarray], descriptors: Sequence[np.ndarray]) -> None:
    if len(boxes) != len(descriptors):
        raise ValueError(f"got boxes for {len(boxes)} frames and descriptors for {len(descriptors)}")
    dims = {np.shape(d)[1] for d in descriptors if np.ndim(d) == 2 and len(d)}
    for t, (b, d) in enumerate(zip(boxes, descriptors)):
        if np.ndim(b) != 2 or np.shape(b)[1] != 4 or np.ndim(d) != 2 or len(b) != len(d):
            raise ValueError(f"frame {t}: need boxes [N, 4] and descriptors [N, D], got {np.shape(b)}, {np.shape(d)}")
    if len(dims) > 1:
        raise ValueError(f"descriptors of different lengths {sorted(dims)}")


def _keep_distinct(boxes: np.ndarray, duplicate_iou: float) -> np.ndarray:
    """``bool [N]``: the detections kept when those overlapping a larger one more than ``duplicate_iou`` go."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.zeros(len(boxes), bool)
    iou = box_iou(boxes, boxes)
    for i in np.argsort(-area, kind="stable"):
        keep[i] = not (iou[i, keep] > duplicate_iou).any()
    return keep


class TrackletLinker:
    """Step 1 and 2 of :func:`track_people` one frame at a time (:meth:`step`): duplicates dropped,
    each detection continuing a tracklet or starting one. :func:`link_tracklets` runs it over a
    recording; the live loop (:class:`LivePeople`) as the frames come."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.t = 0
        self.frames: list[list[int]] = []
        self.sums: list[np.ndarray] = []
        self.first: list[np.ndarray] = []
        self.last_box: list[np.ndarray] = []
        self.last_frame: list[int] = []
        self.look: list[np.ndarray] = []  # running appearance, unit length
        self.active: list[int] = []  # the tracklets seen in the last max_miss + 1 frames

    def step(self, b: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The next frame's boxes ``float [N, 4]`` and unit descriptors ``float [N, D]``: ``int64 [N]``,
        the tracklet of each detection (new ones numbered on), ``-1`` for a duplicate."""
        config, t = self.config, self.t
        self.t += 1
        b, d = np.asarray(b, np.float64), np.asarray(d, np.float64)
        frame_ids = np.full(len(b), -1, np.int64)
        keep = np.flatnonzero(_keep_distinct(b, config.duplicate_iou)) if len(b) else np.zeros(0, np.int64)
        self.active = [k for k in self.active if t - self.last_frame[k] <= config.max_miss + 1]
        matched: dict[int, int] = {}
        if self.active and len(keep):
            iou = box_iou(np.stack([self.last_box[k] for k in self.active]), b[keep])
            dist = descriptor_distance(np.stack([self.look[k] for k in self.active])[:, None], d[keep][None])
            ok = (iou >= config.min_iou) & (dist <= config.link_distance)
            cost = np.where(ok, (1 - iou) + dist, 1e6)
            for r, c in zip(*linear_sum_assignment(cost)):
                if ok[r, c]:
                    matched[int(keep[c])] = self.active[r]
        rate = config.appearance_rate
        for i in keep.tolist():
            k = matched.get(i)
            if k is None:
                k = len(self.frames)
                self.active.append(k)
                self.frames.append([])
                self.sums.append(np.zeros_like(d[i]))
                self.first.append(b[i])
                self.last_box.append(b[i])
                self.last_frame.append(t)
                self.look.append(d[i])
            else:
                mixed = (1 - rate) * self.look[k] + rate * d[i]
                self.look[k] = mixed / max(np.linalg.norm(mixed), 1e-12)
            self.frames[k].append(t)
            self.sums[k] += d[i]
            self.last_box[k], self.last_frame[k] = b[i], t
            frame_ids[i] = k
        return frame_ids


def link_tracklets(
    boxes: Sequence[np.ndarray], descriptors: Sequence[np.ndarray], config: TrackerConfig = TrackerConfig()
) -> Tracklets:
    """Step 1 and 2 of :func:`track_people`: duplicates dropped, detections linked into tracklets
    (:class:`TrackletLinker` over every frame).

    boxes: per frame ``float [N_t, 4]`` (``x0, y0, x1, y1``); descriptors: per frame ``float
    [N_t, D]``, unit vectors (``float16`` is enough). See :class:`Tracklets` for the result.
    """
    _check(boxes, descriptors)
    linker = TrackletLinker(config)
    ids = [linker.step(b, d) for b, d in zip(boxes, descriptors)]
    frames, sums = linker.frames, linker.sums
    dim = next((np.shape(d)[1] for d in descriptors if len(d)), 0)
    return Tracklets(
        ids=ids,
        frames=[np.asarray(f, np.int64) for f in frames],
        mean=np.stack([s / len(f) for s, f in zip(sums, frames)]) if frames else np.zeros((0, dim)),
        first_box=np.stack(linker.first) if linker.first else np.zeros((0, 4)),
    )


class LivePeople:
    """Who each face is, decided frame by frame, for a live source that cannot wait for the whole
    recording (:func:`track_people` groups tracklets after the end, which a camera never has).

    Detections are linked into tracklets as offline (:class:`TrackletLinker`). A tracklet that
    starts is given at once to the person whose mean look is nearest, if that is at most
    ``merge_distance`` away and the person is not in the frame already (one person cannot be in
    two places); otherwise it is a new person. So a person who turned away, left or moved to
    another tile comes back as themselves, as offline, but the choice is made on the tracklet's
    first face and never revised. A person is :meth:`confirmed` once seen in ``min_frames``
    frames, or, where the caller skips frames (a live loop that drops them), once seen for
    ``min_frames`` source frames in at least half the frames looked at since; until then a caller
    holds their results back (a passer-by is dropped offline)."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.linker = TrackletLinker(config)
        self.person: list[int] = []  # tracklet -> person
        self.sums: list[np.ndarray] = []  # person -> sum of descriptors
        self.seen: list[int] = []  # person -> frames seen
        self.first: list[tuple[int, int]] = []  # person -> (step, source frame) first seen
        self.last: list[int] = []  # person -> source frame last seen
        self.frame = -1

    def step(self, boxes: np.ndarray, descriptors: np.ndarray, frame: int | None = None) -> np.ndarray:
        """The next frame's boxes ``float [N, 4]`` and unit descriptors ``float [N, D]`` (``frame``: its
        source index, when frames are skipped): ``int64 [N]``, each detection's person (numbered by
        first appearance), ``-1`` for a duplicate."""
        self.frame = self.frame + 1 if frame is None else frame
        ids = self.linker.step(boxes, descriptors)
        d = np.asarray(descriptors, np.float64)
        out = np.full(len(ids), -1, np.int64)
        new = [i for i in range(len(ids)) if ids[i] >= len(self.person)]
        for i in range(len(ids)):
            if ids[i] >= 0 and i not in new:
                out[i] = self.person[ids[i]]
        for i in new:
            out[i] = self._assign(d[i], set(out[out >= 0].tolist()))
            self.person.append(int(out[i]))
        for i, p in enumerate(out.tolist()):
            if p >= 0:
                self.sums[p] += d[i]
                self.seen[p] += 1
                self.last[p] = self.frame
        return out

    def _assign(self, look: np.ndarray, taken: set[int]) -> int:
        free = [p for p in range(len(self.sums)) if p not in taken]
        if free:
            dist = _distances(_unit(np.stack([self.sums[p] for p in free])), look[None])[:, 0]
            best = int(np.argmin(dist))
            if dist[best] <= self.config.merge_distance:
                return free[best]
        self.sums.append(np.zeros_like(look))
        self.seen.append(0)
        self.first.append((self.linker.t - 1, self.frame))
        self.last.append(self.frame)
        return len(self.sums) - 1

    def confirmed(self, person: int) -> bool:
        """The person has been seen in at least ``min_frames`` frames (or, frames skipped, for
        ``min_frames`` source frames, in at least half the frames looked at since)."""
        n = self.config.min_frames
        step, frame = self.first[person]
        looked = self.linker.t - step
        return self.seen[person] >= n or (self.last[person] - frame + 1 >= n and 2 * self.seen[person] >= looked)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _seen_together(frames: list[np.ndarray]) -> np.ndarray:
    """``bool [M, M]``: tracklets that share a frame."""
    M = len(frames)
    spans = np.array([[f[0], f[-1]] for f in frames]) if M else np.zeros((0, 2), np.int64)
    together = np.zeros((M, M), bool)
    for i, j in zip(
        *np.nonzero(np.triu((spans[:, None, 0] <= spans[None, :, 1]) & (spans[None, :, 0] <= spans[:, None, 1]), 1))
    ):
        together[i, j] = together[j, i] = len(np.intersect1d(frames[i], frames[j], assume_unique=True)) > 0
    return together


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``float64 [n, m]``: Euclidean distances between unit rows of ``a [n, D]`` and ``b [m, D]``,
    from their dot products (no ``[n, m, D]`` temporary)."""
    return np.sqrt(np.clip(2 - 2 * (a @ b.T), 0, None))


def group_tracklets(tracklets: Tracklets, merge_distance: float) -> np.ndarray:
    """Step 3 of :func:`track_people`: ``int64 [M]``, a group (person, before dropping and
    numbering) per tracklet, from merging the closest pair of groups while it is at most
    ``merge_distance`` apart and never seen in the same frame."""
    M = len(tracklets.frames)
    group = np.arange(M)
    if M < 2:
        return group
    counts = np.array([len(f) for f in tracklets.frames], np.float64)
    sums = tracklets.mean * counts[:, None]
    apart = ~_seen_together(tracklets.frames)  # may merge: updated as groups grow
    alive = np.ones(M, bool)
    units = _unit(sums).astype(np.float32)  # each group's mean look, unit length; float32 halves the traffic
    dist = _distances(units, units).astype(np.float64)
    dist[~apart] = np.inf
    np.fill_diagonal(dist, np.inf)
    # Each row's nearest group, kept up to date, so that a merge costs O(M), not O(M²).
    nearest, closest = dist.argmin(1), dist.min(1)
    while True:
        i = int(np.argmin(closest))
        j = int(nearest[i])
        if not closest[i] <= merge_distance:
            break
        i, j = min(i, j), max(i, j)
        sums[i] += sums[j]
        counts[i] += counts[j]
        group[group == j] = i
        apart[i] &= apart[j]
        apart[:, i] = apart[i]
        alive[j] = False
        dist[j, :] = dist[:, j] = np.inf
        units[i] = _unit(sums[i])
        row = _distances(units, units[i][None])[:, 0].astype(np.float64)  # one matrix-vector product
        row[~(apart[i] & alive)] = np.inf
        row[i] = np.inf
        dist[i, :] = dist[:, i] = row
        closest[j] = np.inf
        stale = np.flatnonzero(((nearest == i) | (nearest == j)) & alive)  # rows whose nearest changed
        for r in [i, *stale.tolist()]:
            nearest[r], closest[r] = int(np.argmin(dist[r])), dist[r].min()
        nearer = alive & (row < closest)  # rows for which the grown group is now the nearest
        nearest[nearer], closest[nearer] = i, row[nearer]
    return group


def track_people(
    boxes: Sequence[np.ndarray], descriptors: Sequence[np.ndarray], config: TrackerConfig = TrackerConfig()
) -> People:
    """Who each detection of a recording is (see the module docstring for how).

    boxes: per frame ``float [N_t, 4]`` face boxes ``x0, y0, x1, y1`` (``N_t`` may be 0);
    descriptors: per frame ``float [N_t, D]`` unit descriptors
    (:func:`fmae.face.identity.face_descriptor`). Raises ``ValueError`` when the lists or
    their shapes disagree. See :class:`People` for the result.
    """
    tracklets = link_tracklets(boxes, descriptors, config)
    group = group_tracklets(tracklets, config.merge_distance)
    members = {g: np.flatnonzero(group == g) for g in np.unique(group)}
    seen = {g: sum(len(tracklets.frames[k]) for k in ks) for g, ks in members.items()}
    kept = [g for g in members if seen[g] >= config.min_frames]

    def first_seen(g: int) -> tuple[int, float, float]:
        k = min(members[g], key=lambda k: (tracklets.frames[k][0], tracklets.first_box[k][0]))
        return int(tracklets.frames[k][0]), float(tracklets.first_box[k][0]), float(tracklets.first_box[k][1])

    kept.sort(key=first_seen)
    number = np.full(len(group), -1, np.int64)  # tracklet -> person
    centre = np.zeros((len(kept), tracklets.mean.shape[1]))
    for p, g in enumerate(kept):
        number[members[g]] = p
        weights = np.array([len(tracklets.frames[k]) for k in members[g]], np.float64)
        centre[p] = _unit(weights @ tracklets.mean[members[g]])
    person, score = [], []
    for ids, d in zip(tracklets.ids, descriptors):
        p = np.where(ids >= 0, number[np.maximum(ids, 0)] if len(number) else -1, -1).astype(np.int64)
        s = np.full(len(p), np.nan, np.float32)
        if (p >= 0).any():
            s[p >= 0] = np.einsum("nd,nd->n", np.asarray(d, np.float64)[p >= 0], centre[p[p >= 0]])
        person.append(p)
        score.append(s)
    return People(person, score, len(kept), len(tracklets.frames), len(members) - len(kept))
