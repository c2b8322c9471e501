"""A deterministic synthetic face-video set in DAiSEE's layout, for the default run and tests.

No real data ships with FMAE and nothing is downloaded, so the default pre-training
run and the tests use procedurally drawn faces instead. Each subject has a look (skin
tone, head shape, hair style and colour, clothes, background); each clip animates it
with an engagement level 0–3 (DAiSEE's scale) that decides the behaviour.

One module a job:

- :mod:`~fmae.data.synthetic.config`: what to generate (:class:`SyntheticConfig`, its
  digest, the built-in :func:`pretraining_set` and :func:`probing_set`, the ids);
- :mod:`~fmae.data.synthetic.appearance`: a subject's look (:func:`sample_appearance`);
- :mod:`~fmae.data.synthetic.behaviour`: a clip's motion for an engagement level
  (:func:`sample_behaviour`);
- :mod:`~fmae.data.synthetic.dynamics`: the dynamics set's motion, where the level is
  only a tempo (:func:`sample_dynamics`);
- :mod:`~fmae.data.synthetic.shapes` and :mod:`~fmae.data.synthetic.render`: the drawing
  (:func:`render_clip`: frames, region maps, landmarks, boxes);
- :mod:`~fmae.data.synthetic.generate`: a clip of the set from its seeds
  (:func:`generate_clip`), or one video of changing engagement (:func:`render_segments`);
- :mod:`~fmae.data.synthetic.writer`: the set on disk (:func:`write_dataset`,
  :func:`is_complete`);
- :mod:`~fmae.data.synthetic.cache`: written once under ``<root>/daisee-<config hash>/``
  and reused after (:func:`ensure_synthetic_daisee`, :func:`default_root`).
"""

from fmae.data.synthetic.appearance import BACKGROUNDS, HAIR_STYLES, Appearance, sample_appearance
from fmae.data.synthetic.behaviour import NUM_LEVELS, Behaviour, sample_behaviour
from fmae.data.synthetic.cache import default_root, ensure_synthetic_daisee
from fmae.data.synthetic.config import (
    GENERATOR_VERSION,
    SyntheticConfig,
    clip_id,
    pretraining_set,
    probing_set,
    subject_id,
)
from fmae.data.synthetic.dynamics import (
    DYNAMICS_HEAD_WIDTHS_S,
    DYNAMICS_SWAY,
    DYNAMICS_VERSION,
    DYNAMICS_WIDTHS_S,
    sample_dynamics,
    smoothing_taps,
    unit_process,
)
from fmae.data.synthetic.generate import GeneratedClip, SegmentedVideo, generate_clip, render_segments
from fmae.data.synthetic.render import RenderedClip, render_clip
from fmae.data.synthetic.writer import MANIFEST, is_complete, write_dataset

__all__ = [
    "BACKGROUNDS",
    "DYNAMICS_HEAD_WIDTHS_S",
    "DYNAMICS_SWAY",
    "DYNAMICS_VERSION",
    "DYNAMICS_WIDTHS_S",
    "GENERATOR_VERSION",
    "HAIR_STYLES",
    "MANIFEST",
    "NUM_LEVELS",
    "Appearance",
    "Behaviour",
    "GeneratedClip",
    "RenderedClip",
    "SegmentedVideo",
    "SyntheticConfig",
    "clip_id",
    "default_root",
    "ensure_synthetic_daisee",
    "generate_clip",
    "is_complete",
    "pretraining_set",
    "probing_set",
    "render_clip",
    "render_segments",
    "sample_appearance",
    "sample_behaviour",
    "sample_dynamics",
    "smoothing_taps",
    "subject_id",
    "unit_process",
    "write_dataset",
]
