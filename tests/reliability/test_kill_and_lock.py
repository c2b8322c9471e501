"""Nothing lost, nothing let in (issue #23, parts 3 and 4), for ``preprocess``, ``extract``,
the probe's feature cache and pre-training, each run as ``python -m fmae.<command>``:

- a seeded sample of ``benchmarks/reliability/kill.py`` (2 SIGKILLs per command): every
  rerun ends with the outputs of an uninterrupted run, and no partial file looks finished;
- two writers: a command into a folder that another process holds is refused with one
  line naming the folder and the holder; the holder goes on (the issue's defect: two
  ``preprocess`` runs into one folder wrote 17 manifest rows for 12 videos);
- a write that fails for want of room (a file-size limit, ``RLIMIT_FSIZE``) ends the
  command with one error line, and the outputs already there stay as they were.
"""

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmae.data import load_region_maps
from fmae.data.preprocess import find_videos, read_manifest
from fmae.weights.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"))
import kill  # noqa: E402
import run_outputs as outputs  # noqa: E402

FAULTS = ("crashes", "hangs", "partial_files", "differing_reruns", "lost_outputs")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The sample's inputs (5 synthetic face videos, an encoder) and, once it ran, its reference runs."""
    return tmp_path_factory.mktemp("kill")


@pytest.fixture(scope="module")
def commands(work):
    return kill.cases(kill.prepare(work, clips_per_subject=1))


@pytest.fixture(scope="module")
def campaign(work, commands):
    """The figures of the seeded sample: 2 kills per command, in one chain."""
    return kill.campaign(work, kills=2, chain=2, seed=0, clips_per_subject=1)


@pytest.mark.slow
@pytest.mark.parametrize("command", kill.COMMANDS)
def test_sigkill_at_random_moments_loses_nothing_and_lets_nothing_partial_in(campaign, command):
    figures = campaign[command]
    assert figures["kills"] >= 2
    assert {k: figures[k] for k in FAULTS} == dict.fromkeys(FAULTS, 0), figures["problems"]


def test_the_comparison_sees_a_cut_file_a_lost_one_and_a_torn_line(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    ref.mkdir()
    (ref / "crops.avi").write_bytes(bytes(range(200)))
    (ref / "record.json").write_text(f'{{"status": "ok", "seconds": 1.5, "out": "{ref}"}}')
    (ref / "manifest.jsonl").write_text('{"source": "a", "time": 1}\n{"source": "b", "time": 2}\n')
    shutil.copytree(ref, out)
    (out / "record.json").write_text(f'{{"status": "ok", "seconds": 9.0, "out": "{out}"}}')  # times, folder: alike
    assert outputs.differences(out, ref) == {"missing": [], "extra": [], "differs": []}
    assert outputs.partial_files(out, ref) == []

    (out / "crops.avi").write_bytes(bytes(range(100)))  # cut short
    with (out / "manifest.jsonl").open("a") as f:
        f.write('{"source": "c", "ti')  # torn
    (out / "record.json").unlink()
    assert outputs.partial_files(out, ref) == ["crops.avi", "manifest.jsonl"]
    assert outputs.differences(out, ref) == {
        "missing": ["record.json"],
        "extra": [],
        "differs": ["crops.avi", "manifest.jsonl"],
    }


# ------------------------------------------------------------------------------ two writers


def _hold(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock until it is killed."""
    code = textwrap.dedent(f"""
        import time
        from fmae.runtime.lock import folder_lock
        with folder_lock({str(folder)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture
def torch_threads():
    """``train --threads 1`` run in this process sets torch's threads: put them back after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("command", kill.COMMANDS)
def test_a_folder_another_run_holds_is_refused_in_one_line(commands, command, tmp_path, capsys, torch_threads):
    out = tmp_path / "out"
    holder = _hold(out)
    try:
        main = __import__(f"fmae.{command}", fromlist=["main"]).main
        assert main(commands[command].args(out)) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"error: {out} is in use by another run (pid {holder.pid} on ")
        assert "python" in err and "-c" in err  # the holder's command line
        assert holder.poll() is None
        assert outputs.visible_files(out) == []  # nothing written beside the holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_preprocess_into_the_same_folder_is_refused_and_the_first_unaffected(commands, tmp_path, capsys):
    from fmae.preprocess import main

    out = tmp_path / "out"
    case = commands["preprocess"]
    first = subprocess.Popen(kill.command_line(case, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock, deadline = out / ".fmae.lock", time.monotonic() + 300
    while not (lock.is_file() and lock.read_text().startswith(f"pid {first.pid} ")) and time.monotonic() < deadline:
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.01)
    assert main(case.args(out)) == 2
    assert f"is in use by another run (pid {first.pid} on " in capsys.readouterr().err
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    videos = len(find_videos(case.args(out)[0]))
    assert len((out / "manifest.jsonl").read_text().splitlines()) == videos == len(read_manifest(out))


# ------------------------------------------------------------------------------ no room to write


def _out_of_room(command: list[str], limit: int) -> subprocess.CompletedProcess:
    """``command`` where no file may grow past ``limit`` bytes: a write beyond fails with EFBIG,
    as it would with ENOSPC on a full disk (SIGXFSZ, which would kill it instead, is ignored)."""

    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(command, preexec_fn=limit_writes, capture_output=True, text=True, timeout=600)


def _copy_of_reference(work: Path, command: str, tmp_path: Path) -> tuple[Path, Path]:
    """The sample's uninterrupted run of ``command``, and a copy of it to run again."""
    reference = work / f"{command}-reference"
    out = tmp_path / "out"
    shutil.copytree(reference, out, ignore=shutil.ignore_patterns(".fmae.lock"))
    return reference, out


def _one_clear_line(done: subprocess.CompletedProcess, out: Path, failed_in: Path | None = None) -> None:
    """The run ended with exit status 1 and one line naming a file in ``failed_in`` (default
    ``out``) and what to do, without a traceback, and left no partial file in ``out``."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {failed_in or out}/") and "File too large" in last and "make room" in last, last
    assert ".tmp" not in last  # it names the file the user asked for, not its temporary
    assert outputs.temporaries(out) == []  # the partial file is gone


@pytest.mark.slow
@pytest.mark.usefixtures("campaign")  # its reference runs
def test_preprocess_out_of_room_keeps_the_cache_it_had(work, commands, tmp_path):
    reference, out = _copy_of_reference(work, "preprocess", tmp_path)
    # Another quality: every video is redone, and the first crop file outgrows the limit.
    done = _out_of_room([*kill.command_line(commands["preprocess"], out), "--qscale", "4"], 4096)
    _one_clear_line(done, out)
    assert outputs.differences(out, reference) == {"missing": [], "extra": [], "differs": []}
    for record in read_manifest(out).values():
        if record["status"] == "ok":
            assert load_region_maps(out / record["video"]).shape[0] == record["frames"]


@pytest.mark.slow
@pytest.mark.usefixtures("campaign")  # its reference runs
def test_extract_out_of_room_keeps_the_features_it_had(work, commands, tmp_path):
    reference, out = _copy_of_reference(work, "extract", tmp_path)
    # Every token (--pool tokens) is redone, but first the face pass's crops, in a temporary
    # folder, outgrow the limit. Each video was then recorded as an error, in place of its
    # good record, and the run ended "done: 3 error".
    done = _out_of_room([*kill.command_line(commands["extract"], out), "--pool", "tokens"], 8192)
    _one_clear_line(done, out, failed_in=Path(tempfile.gettempdir()))
    assert outputs.differences(out, reference) == {"missing": [], "extra": [], "differs": []}
    for features in out.rglob("*.features.safetensors"):
        assert load_file(features)["features"].ndim == 2


@pytest.mark.slow
@pytest.mark.usefixtures("campaign")  # its reference runs
def test_probe_out_of_room_keeps_the_feature_cache_it_had(work, commands, tmp_path):
    reference, out = _copy_of_reference(work, "probe", tmp_path)
    # Four clips per training item: a new cache entry four times the size of the old one.
    done = _out_of_room([*kill.command_line(commands["probe"], out), "--train-views", "4"], 12288)
    _one_clear_line(done, out)
    # The settings are the new run's; the cache entries and the results are the last good run's.
    assert outputs.differences(out, reference) == {"missing": [], "extra": [], "differs": ["config.yaml"]}
    for entry in (out / "features").iterdir():
        assert load_file(entry)["features"].shape[1] == 1


@pytest.mark.slow
@pytest.mark.usefixtures("campaign")  # its reference runs
def test_train_out_of_room_keeps_the_last_good_checkpoint(work, commands, tmp_path):
    reference, out = _copy_of_reference(work, "train", tmp_path)
    command = kill.command_line(commands["train"], out)
    assert "--resume" in command
    # Three more steps, then a checkpoint of about 38 MB that cannot grow past 1 MB.
    done = _out_of_room([*command, "--steps", "15"], 2**20)
    _one_clear_line(done, out)
    checkpoints = sorted(os.listdir(reference / "checkpoints"))
    assert sorted(os.listdir(out / "checkpoints")) == checkpoints
    for name in checkpoints:
        assert (out / "checkpoints" / name).read_bytes() == (reference / "checkpoints" / name).read_bytes()
    assert load_checkpoint(out / "checkpoints" / checkpoints[-1])["trainer"]["step"] == 12
