"""What the synthetic set holds: :class:`SyntheticConfig`, the two built-in sets, and the
DAiSEE-style ids of its subjects and clips."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fmae.data.synthetic.behaviour import NUM_LEVELS
from fmae.data.synthetic.dynamics import DYNAMICS_VERSION
from fmae.runtime.files import digest

GENERATOR_VERSION = 1
"""Part of the cache key: bump it whenever the drawing or the behaviour changes."""


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. The defaults make 50 clips of 48 frames at 112×112, 15 fps.

    Subjects are split subject-disjointly (as in DAiSEE) by ``split_fractions``
    (train, validation, test), rounded, train taking the rest. Clip ``j`` of subject
    ``s`` has engagement level ``(s + j) % 4``, so the levels are balanced and every
    subject with four or more clips shows all of them. ``qscale`` is MJPEG's quantiser
    (2 best … 31 worst).

    ``dynamics`` (off by default) makes the *dynamics set* instead
    (:func:`fmae.data.synthetic.dynamics.sample_dynamics`): a clip's level decides only how
    fast its eyelids, gaze and mouth move, with every frame, pose, scale, light and look
    drawn from one distribution for all levels, so the level is in no single frame and in no
    time average. Off, the set is the same as before the option existed, byte for byte,
    under the same :meth:`digest`.
    """

    seed: int = 0
    num_subjects: int = 10
    clips_per_subject: int = 5
    num_frames: int = 48
    fps: int = 15
    size: int = 112
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    qscale: int = 3
    dynamics: bool = False

    def __post_init__(self) -> None:
        for name in ("num_subjects", "clips_per_subject", "num_frames", "fps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be even and >= 16 (4:2:0 video), got {self.size}")
        if not 2 <= self.qscale <= 31:
            raise ValueError(f"qscale must be in [2, 31], got {self.qscale}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError(
                f"split_fractions must be three non-negative numbers summing to 1, got {self.split_fractions}"
            )

    def digest(self) -> str:
        """12 hex digits of a hash of the fields and :data:`GENERATOR_VERSION`."""
        fields = dataclasses.asdict(self)
        if not self.dynamics:  # the sets made before the option keep their digest (and cache folder)
            del fields["dynamics"]
        else:
            fields["dynamics_version"] = DYNAMICS_VERSION
        return digest({"version": GENERATOR_VERSION, **fields}, length=12)

    def subject_splits(self) -> list[str]:
        """The split (one of :data:`fmae.data.clips.SPLITS`) of each subject, in order."""
        n = self.num_subjects
        n_val, n_test = (round(n * f) for f in self.split_fractions[1:])
        n_train = n - n_val - n_test
        if n_train < 1:
            raise ValueError(f"split_fractions {self.split_fractions} leave no training subject of {n}")
        return ["Train"] * n_train + ["Validation"] * n_val + ["Test"] * n_test

    def engagement(self, subject: int, clip: int) -> int:
        return (subject + clip) % NUM_LEVELS


def pretraining_set(size: int = 112) -> SyntheticConfig:
    """The built-in pre-training set: 200 people, one clip each (seed 1, so no subject is a
    subject of :func:`probing_set`), split 120/40/40 by subject.

    A masked autoencoder that may reconstruct a hidden face only from what the mask left
    (at ratio 0.9 with the facial mask: the background) learns what faces share when it
    sees many people, and learns who is in front of which background when it sees few:
    on the 6 training subjects of the 10-subject set, held-out error rose with every
    step after the first hundred, above the visible-mean baseline on the eyes.
    """
    return SyntheticConfig(seed=1, num_subjects=200, clips_per_subject=1, size=size)


def probing_set(size: int = 112) -> SyntheticConfig:
    """The built-in engagement set the probe trains and tests on: 40 subjects with 5 clips
    each (every subject shows every level), 24/8/8 subjects, so 40 test videos."""
    return SyntheticConfig(num_subjects=40, size=size)


def subject_id(subject: int) -> str:
    """DAiSEE-style six-digit subject id; the leading 9 marks it synthetic."""
    return f"9{subject + 1:05d}"


def clip_id(subject: int, clip: int) -> str:
    """Ten-digit clip id: the subject id then the clip number from 1001, as in DAiSEE."""
    return f"{subject_id(subject)}{1001 + clip}"
