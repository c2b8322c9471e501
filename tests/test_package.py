"""The package face: its public API, and ``python -m pytest`` from the repository root, which
imports the checkout's ``fmae/`` (no compiled module) and must still find the installed ``fmae._C``."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fmae

PROBE = "import fmae, fmae._C, fmae.ops._backend as b; assert b.cpp_extension() is not None; print(fmae.__file__)"


def test_a_source_checkout_first_on_the_path_still_finds_the_built_extension(tmp_path):
    checkout = tmp_path / "checkout"
    # The sources only, as a clean clone has them: no compiled modules.
    shutil.copytree(Path(fmae.__file__).parent, checkout / "fmae", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    assert not list((checkout / "fmae").rglob("*.so"))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imported = Path(out.stdout.strip())
    if checkout not in imported.parents:
        pytest.skip(f"an editable install's import hook takes fmae from {imported.parent}, not from the working folder")


def test_the_package_face_offers_its_api_lazily():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, fmae; print('torch' in sys.modules, sorted(fmae.__all__))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=1) == ["False", "['create', 'extract_video', 'load_encoder']\n"]
    model = fmae.create("fmae_vit_tiny", img_size=32, num_frames=4)
    assert model.config.img_size == 32 and set(fmae.__all__) <= set(dir(fmae))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fmae.nothing  # noqa: B018
