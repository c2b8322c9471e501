"""People from the detections of many faces, on synthetic scenes whose truth is known: 2×2 tiles
of faces with jittered boxes and noisy appearance descriptors, tiles that swap, a person who
leaves and comes back, missed detections, duplicates and passing faces. (Real faces:
``tests/face/test_gallery_identities.py``.)"""

import numpy as np
import pytest

from fmae.face.multi_tracking import TrackerConfig, Tracklets, box_iou, group_tracklets, link_tracklets, track_people

D = 48
TILE = 200.0


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _looks(n: int, seed: int = 0) -> np.ndarray:
    """``float64 [n, D]``: one appearance per person, far apart (random directions in D dims)."""
    return _unit(np.random.default_rng(seed).normal(size=(n, D)))


class Scene:
    """Frames of faces in 2×2 tiles: ``boxes``, ``descriptors`` and the true person of each detection."""

    def __init__(self, T: int, looks: np.ndarray, seed: int = 1):
        self.T, self.looks, self.rng = T, looks, np.random.default_rng(seed)
        self.boxes = [np.zeros((0, 4)) for _ in range(T)]
        self.descriptors = [np.zeros((0, D)) for _ in range(T)]
        self.truth = [np.zeros(0, np.int64) for _ in range(T)]

    def show(self, person: int, tile: int, frames, look: np.ndarray | None = None, size: float = 80.0) -> None:
        """``person`` in ``tile`` (0 top left … 3 bottom right) in ``frames``, a jittered box and a
        descriptor about 0.1 from their look (consecutive frames about 0.14 apart)."""
        origin = np.array([tile % 2, tile // 2]) * TILE + 60
        for t in frames:
            corner = origin + self.rng.uniform(-2, 2, 2)
            box = np.concatenate([corner, corner + size])
            noise = _unit(self.rng.normal(size=D))
            d = _unit((self.looks[person] if look is None else look) + 0.1 * noise)
            self.boxes[t] = np.vstack([self.boxes[t], box])
            self.descriptors[t] = np.vstack([self.descriptors[t], d])
            self.truth[t] = np.append(self.truth[t], person)


def meeting_scene(T: int = 120, seed: int = 1) -> Scene:
    """Four people; tiles 0 and 3 swap at ``T // 2``; person 1 leaves for a third of the video;
    one detection in ten is missed."""
    scene = Scene(T, _looks(4), seed)
    keep = np.random.default_rng(seed + 100).random((4, T)) > 0.1
    swap = T // 2
    for person, tiles in ((0, (0, 3)), (1, (1, 1)), (2, (2, 2)), (3, (3, 0))):
        frames = np.flatnonzero(keep[person])
        if person == 1:
            frames = frames[(frames < T // 4) | (frames >= T // 4 + T // 3)]
        scene.show(person, tiles[0], frames[frames < swap])
        scene.show(person, tiles[1], frames[frames >= swap])
    return scene


def _confusion(truth: list[np.ndarray], person: list[np.ndarray]) -> dict[tuple[int, int], int]:
    pairs: dict[tuple[int, int], int] = {}
    for a, b in zip(np.concatenate(truth).tolist(), np.concatenate(person).tolist()):
        pairs[a, b] = pairs.get((a, b), 0) + 1
    return pairs


def test_swaps_leaving_and_missed_frames_keep_every_identity():
    scene = meeting_scene()
    people = track_people(scene.boxes, scene.descriptors)
    assert people.count == 4 and people.dropped == 0
    pairs = _confusion(scene.truth, people.person)
    assert len(pairs) == 4 and len({p for _, p in pairs}) == 4, pairs  # one to one: nothing split, nothing merged
    assert people.tracklets > 4  # the swap and the absence broke tracklets that the identities joined again


def test_position_alone_would_trade_identities_at_the_swap():
    """Without the appearance gate the tracklets of tiles 0 and 3 run on across the swap, each
    holding two people: the gate is what keeps them apart."""
    scene = meeting_scene()
    people = track_people(scene.boxes, scene.descriptors, TrackerConfig(link_distance=10.0))
    assert len(_confusion(scene.truth, people.person)) > 4


def test_people_seen_too_briefly_are_dropped_not_guessed():
    scene = Scene(60, _looks(3))
    scene.show(0, 0, range(60))
    scene.show(1, 1, range(10, 15))  # a passer-by: 5 frames
    scene.show(2, 2, range(30, 52))  # 22 frames: long enough
    people = track_people(scene.boxes, scene.descriptors, TrackerConfig(min_frames=20))
    assert people.count == 2 and people.dropped == 1
    for truth, person, score in zip(scene.truth, people.person, people.score):
        np.testing.assert_array_equal(person == -1, truth == 1)
        assert score.dtype == np.float32
        assert np.isnan(score[person == -1]).all() and (score[person >= 0] > 0.9).all()


def test_a_brief_return_of_a_known_person_is_kept():
    scene = Scene(80, _looks(2))
    scene.show(0, 0, range(0, 40))
    scene.show(1, 1, range(0, 80))
    scene.show(0, 2, range(70, 73))  # back for three frames, in another tile
    people = track_people(scene.boxes, scene.descriptors, TrackerConfig(min_frames=20))
    assert people.count == 2 and people.dropped == 0
    assert all(ids[-1] == people.person[0][0] for ids in people.person[70:73])


def test_duplicate_detections_of_one_face_go():
    scene = Scene(30, _looks(1))
    scene.show(0, 0, range(30))
    scene.show(0, 0, range(10, 20), size=70)  # a second, smaller box on the same face
    people = track_people(scene.boxes, scene.descriptors, TrackerConfig(min_frames=5))
    assert people.count == 1
    for ids in people.person[10:20]:
        assert ids.tolist() == [0, -1]


def test_lookalikes_seen_together_stay_two_people():
    look = _looks(1)[0]
    scene = Scene(40, _looks(2))
    scene.show(0, 0, range(40), look=look)
    scene.show(1, 1, range(40), look=look)
    people = track_people(scene.boxes, scene.descriptors, TrackerConfig(min_frames=5))
    assert people.count == 2
    assert all(sorted(ids.tolist()) == [0, 1] for ids in people.person)


def test_people_are_numbered_by_first_appearance_then_left_to_right():
    scene = Scene(40, _looks(3))
    scene.show(0, 3, range(5, 40))
    scene.show(1, 1, range(8, 40))  # top right, at the same frame as the bottom left one
    scene.show(2, 2, range(8, 40))
    people = track_people(scene.boxes, scene.descriptors, TrackerConfig(min_frames=5))
    first = {int(t[0]): int(p[0]) for t, p in zip(scene.truth, people.person) if len(t) == 1}
    assert first == {0: 0}
    at_8 = dict(zip(scene.truth[8].tolist(), people.person[8].tolist()))
    assert at_8 == {0: 0, 2: 1, 1: 2}  # bottom left (x 60) before top right (x 260)


def test_groups_never_join_tracklets_seen_in_one_frame():
    scene = Scene(30, _looks(2))
    scene.show(0, 0, range(30))
    scene.show(1, 1, range(30))
    tracklets = link_tracklets(scene.boxes, scene.descriptors)
    assert len(tracklets.frames) == 2
    assert (group_tracklets(tracklets, merge_distance=10.0) == [0, 1]).all()  # however alike they are allowed to be


def _group_reference(tracklets, merge_distance):
    """Plain greedy centroid linkage: merge the globally closest allowed pair, recompute, repeat."""
    groups = [[k] for k in range(len(tracklets.frames))]
    counts = np.array([len(f) for f in tracklets.frames], np.float64)
    while True:
        best = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                fa = np.concatenate([tracklets.frames[k] for k in groups[a]])
                fb = np.concatenate([tracklets.frames[k] for k in groups[b]])
                if np.intersect1d(fa, fb).size:
                    continue
                ma = _unit(counts[groups[a]] @ tracklets.mean[groups[a]])
                mb = _unit(counts[groups[b]] @ tracklets.mean[groups[b]])
                d = np.linalg.norm(ma - mb)
                if d <= merge_distance and (best is None or d < best[0]):
                    best = (d, a, b)
        if best is None:
            break
        _, a, b = best
        groups[a] += groups.pop(b)
    label = np.empty(len(tracklets.frames), np.int64)
    for g in groups:
        label[g] = min(g)
    return label


@pytest.mark.parametrize("seed", range(20))
def test_grouping_matches_the_plain_greedy_reference(seed):
    rng = np.random.default_rng(seed)
    M, P = int(rng.integers(2, 30)), int(rng.integers(1, 6))
    looks = _unit(rng.normal(size=(P, 16)))
    mean = _unit(looks[rng.integers(0, P, M)] + 0.35 * rng.normal(size=(M, 16)))
    starts = rng.integers(0, 100, M)
    frames = [np.arange(s, s + int(rng.integers(1, 20))) for s in starts]
    tracklets = Tracklets([], frames, mean, np.zeros((M, 4)))
    np.testing.assert_array_equal(group_tracklets(tracklets, 0.6), _group_reference(tracklets, 0.6))


def test_no_detections_no_people():
    empty = track_people([np.zeros((0, 4))] * 5, [np.zeros((0, D))] * 5)
    assert empty.count == 0 and [len(p) for p in empty.person] == [0] * 5
    assert track_people([], []).count == 0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="boxes for 2 frames and descriptors for 1"):
        track_people([np.zeros((0, 4))] * 2, [np.zeros((0, D))])
    with pytest.raises(ValueError, match=r"frame 0: need boxes \[N, 4\]"):
        track_people([np.zeros((2, 4))], [np.zeros((1, D))])
    with pytest.raises(ValueError, match="different lengths"):
        track_people([np.zeros((1, 4)), np.zeros((1, 4))], [np.ones((1, D)), np.ones((1, D + 1))])
    with pytest.raises(ValueError, match="min_iou"):
        TrackerConfig(min_iou=0)
    with pytest.raises(ValueError, match="min_frames"):
        TrackerConfig(min_frames=0)


def test_box_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0], [0, 0]])
