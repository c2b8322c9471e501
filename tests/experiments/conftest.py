"""What the experiments' tests share: a toy evidence setting on a tiny dynamics set."""

import pytest

from fmae.experiments.evidence import EvidenceConfig


@pytest.fixture
def toy_evidence(tmp_path):
    """``toy_evidence(**overrides)``: the evidence's settings for 4 subjects of 8-frame 32×32
    dynamics videos, 4-frame clips, kept under ``tmp_path``."""

    def make(**overrides) -> EvidenceConfig:
        settings = dict(
            tasks="dynamics",
            img_size=32,
            num_frames=4,
            temporal_stride=1,
            subjects=4,
            video_frames=8,
            views=2,
            num_workers=0,
            data_dir=str(tmp_path),
        )
        return EvidenceConfig(**{**settings, **overrides})

    return make
