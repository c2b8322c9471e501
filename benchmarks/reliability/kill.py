"""Kill at any moment (issue #23, part 3): SIGKILL ``preprocess``, ``extract``, the probe
(while it fills its feature cache) and pre-training at random moments, rerun each to
completion, and compare with a run that was never interrupted.

    python benchmarks/reliability/kill.py                  # a seeded sample: 2 kills per command
    python benchmarks/reliability/kill.py --full --json benchmarks/results/reliability/kill.json

Every command runs as its users run it (``python -m fmae.<command>``) on a small built-in
synthetic set (:func:`prepare`: 10 face videos of 24 frames at 32², a random-init ViT-tiny
encoder at 32² × 4 frames). Per command:

1. a reference run, never interrupted, into a folder of its own. Its work time runs from
   the moment its output folder's lock (:mod:`fmae.runtime.lock`) names it, when the
   imports are over and the writing starts, to its exit;
2. chains of ``--chain`` kills, each into a fresh folder: start the command, SIGKILL it a
   uniformly random fraction of the reference's work time after its lock names it, and
   check that every output it left that a reader would take as finished is what the
   reference wrote (:func:`run_outputs.partial_files`); rerun (``train``: with ``--resume``
   once a checkpoint exists) and kill again; after the chain's last kill, rerun to the end;
3. compare the finished folder with the reference's (:func:`run_outputs.differences`: every
   output file read as its users read it, less wall-clock times and the folder's own path;
   ``train``'s checkpoints tensor by tensor, optimiser and RNG states included).

A run that ends before its kill moment is ``missed``, not a kill; chains go on until
``--kills`` kills have landed. The work time that kill moments are drawn over follows the
machine's load: a run from scratch that ends before its kill moment replaces it. The
figures per command: kills, missed, runs, crashes (a rerun that exits non-zero), hangs (a
run past its time limit), partial files (outputs that looked finished after a kill but
were not the reference's), reruns whose outputs differ, outputs lost, and the temporaries
that killed writers left (hidden, never read).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import run_outputs as outputs
import torch

from fmae.data import SyntheticConfig, ensure_synthetic_daisee
from fmae.model import create
from fmae.runtime.lock import lock_path
from fmae.runtime.machine import cpu_name, load_average
from fmae.weights import save_encoder

COMMANDS: tuple[str, ...] = ("preprocess", "extract", "probe", "train")
_POLL_S = 0.002


@dataclass(frozen=True)
class Inputs:
    """What the commands read: a synthetic DAiSEE-layout set and an encoder for ``extract``."""

    data: Path
    encoder: Path


def prepare(work: Path, clips_per_subject: int = 2) -> Inputs:
    """The synthetic set (5 people × ``clips_per_subject`` clips of 24 frames at 32², with
    region maps) and a random-init ViT-tiny encoder at 32² × 4 frames, under ``work``."""
    data = ensure_synthetic_daisee(
        work / "data", SyntheticConfig(num_subjects=5, clips_per_subject=clips_per_subject, num_frames=24, size=32)
    )
    encoder = work / "encoder.safetensors"
    if not encoder.is_file():
        torch.manual_seed(0)
        save_encoder(create("fmae_vit_tiny", img_size=32, num_frames=4), encoder)
    return Inputs(data, encoder)


@dataclass(frozen=True)
class Case:
    """One command under test: its arguments writing into a folder, and what a rerun adds."""

    name: str
    args: Callable[[Path], list[str]]
    resume: Callable[[Path], list[str]] = lambda out: []


def _resume_once_checkpointed(out: Path) -> list[str]:
    # --resume refuses a folder without a checkpoint; a run killed before its first one starts afresh.
    return ["--resume"] if any((out / "checkpoints").glob("ckpt-*.safetensors")) else []


def cases(inputs: Inputs) -> dict[str, Case]:
    """The four commands, each small enough for seconds of work (tests/train_helpers.py's sizes)."""
    common = "--device cpu --dtype fp32 --no-progress".split()
    probe = "--random-init --img-size 32 --num-frames 4 --epochs 3 --batch-size 4 --num-workers 0".split()
    train = (
        "--img-size 32 --num-frames 4 --batch-size 2 --steps 12 --log-every 1 --ckpt-every 3 --keep-last 100 "
        "--image-every 6 --eval-clips 0 --num-workers 0 --warmup-steps 2 --threads 1"
    ).split()
    data, encoder = str(inputs.data), str(inputs.encoder)
    return {
        "preprocess": Case("preprocess", lambda out: [data, str(out), "--size", "32", "--no-progress"]),
        "extract": Case(
            "extract",
            lambda out: [f"{data}/DataSet/Train", "--weights", encoder, "--out-dir", str(out), *common],
        ),
        "probe": Case("probe", lambda out: [*probe, "--data-root", data, "--out-dir", str(out), *common]),
        "train": Case(
            "train",
            lambda out: ["--data-root", data, "--out-dir", str(out), *train, *common],
            resume=_resume_once_checkpointed,
        ),
    }


def command_line(case: Case, out: Path) -> list[str]:
    """The command that runs ``case`` into ``out`` (a rerun's flags included)."""
    return [sys.executable, "-m", f"fmae.{case.name}", *case.args(out), *case.resume(out)]


def _start(case: Case, out: Path) -> subprocess.Popen:
    log = out.with_name(f"{out.name}.log")
    with log.open("ab") as sink:  # the child keeps its own descriptor
        sink.write(f"$ {shlex.join(command_line(case, out))}\n".encode())
        return subprocess.Popen(command_line(case, out), stdout=sink, stderr=subprocess.STDOUT)


def _working_since(proc: subprocess.Popen, out: Path, limit_s: float) -> float | None:
    """When ``proc``'s name appeared in ``out``'s lock file (it started writing), or ``None``
    when it ended (or ran past ``limit_s``) before."""
    lock, mark, deadline = lock_path(out), f"pid {proc.pid} ".encode(), time.monotonic() + limit_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if lock.read_bytes().startswith(mark):
                return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(_POLL_S)
    return None


def _tail(out: Path, lines: int = 5) -> str:
    log = out.with_name(f"{out.name}.log")
    return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else ""


@dataclass
class Reference:
    """The uninterrupted run: its folder, its work time (lock to exit) and its whole time.
    ``work_s`` follows the machine: each later run from scratch that is not killed updates it."""

    out: Path
    work_s: float
    total_s: float


def reference(case: Case, out: Path, limit_s: float = 600.0) -> Reference:
    """Run ``case`` into ``out`` without interruption; ``RuntimeError`` when it fails."""
    start = time.monotonic()
    proc = _start(case, out)
    since = _working_since(proc, out, limit_s)
    try:
        code = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    end = time.monotonic()
    if code != 0 or since is None:
        raise RuntimeError(f"the reference run of {case.name} failed (exit {code}): {_tail(out)}")
    return Reference(out, end - since, end - start)


@dataclass
class Tally:
    """What the kills of one command showed (see the module docstring)."""

    kills: int = 0
    missed: int = 0
    runs: int = 0
    chains: int = 0
    crashes: int = 0
    hangs: int = 0
    partial_files: int = 0
    differing_reruns: int = 0
    lost_outputs: int = 0
    temporaries_left: int = 0
    kill_fractions: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _chain(case: Case, out: Path, ref: Reference, kills: int, rng: random.Random, tally: Tally) -> None:
    """Up to ``kills`` kills into ``out``, each followed by a rerun; the last run goes to its end."""
    limit_s = max(120.0, 10 * ref.total_s)
    left = 1.0  # a guess at the part of the reference's work that a rerun still has to do
    problems = len(tally.problems)
    tally.chains += 1
    while True:
        proc = _start(case, out)
        tally.runs += 1
        if kills and (since := _working_since(proc, out, limit_s)) is not None:
            fraction = rng.random()
            try:
                proc.wait(timeout=max(0.0, since + fraction * left * ref.work_s - time.monotonic()))
                tally.missed += 1  # it ended first: the run went to its end
                if left == 1.0:  # from scratch: how long the whole work takes on the machine as it is now
                    ref.work_s = time.monotonic() - since
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                tally.kills += 1
                tally.kill_fractions.append(round(fraction * left, 3))
                left *= 1 - fraction
                kills -= 1
                partial = outputs.partial_files(out, ref.out)
                tally.partial_files += len(partial)
                tally.problems += [f"{out.name}: after a kill, {f} looked finished but was not" for f in partial]
                continue
        try:
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            tally.hangs += 1
            tally.problems.append(f"{out.name}: a run passed {limit_s:.0f} s")
            return
        if code != 0:
            tally.crashes += 1
            tally.problems.append(f"{out.name}: a rerun exited {code}: {_tail(out)}")
            return
        break
    found = outputs.differences(out, ref.out)
    tally.lost_outputs += len(found["missing"])
    tally.differing_reruns += bool(found["extra"] or found["differs"])
    tally.problems += [f"{out.name}: {kind} {f}" for kind, files in found.items() for f in files]
    tally.temporaries_left += len(outputs.temporaries(out))
    if len(tally.problems) == problems:  # only a folder that shows a problem is worth its disk space
        shutil.rmtree(out)
        out.with_name(f"{out.name}.log").unlink()


def campaign(
    work: Path,
    commands: tuple[str, ...] = COMMANDS,
    kills: int = 2,
    chain: int = 2,
    seed: int = 0,
    clips_per_subject: int = 2,
) -> dict[str, dict]:
    """``kills`` landed SIGKILLs per command in ``commands``, in chains of ``chain``, under
    ``work`` (the reference runs stay in ``work/<command>-reference``, chains that showed a
    problem in ``work/<command>-<n>``); returns the figures per command (:class:`Tally`, the
    reference's times, the command)."""
    work.mkdir(parents=True, exist_ok=True)
    everything = cases(prepare(work, clips_per_subject))
    rng = random.Random(seed)
    figures: dict[str, dict] = {}
    for name in commands:
        case = everything[name]
        ref = reference(case, work / f"{name}-reference")
        reference_work_s = ref.work_s
        tally = Tally()
        while tally.kills < kills and tally.runs < 4 * kills + 4:
            _chain(case, work / f"{name}-{tally.chains:03d}", ref, min(chain, kills - tally.kills), rng, tally)
        figures[name] = {
            "command": shlex.join(["python", "-m", f"fmae.{name}", *case.args(Path("OUT"))]),
            "reference_s": round(ref.total_s, 2),
            "reference_work_s": round(reference_work_s, 2),
            "last_work_s": round(ref.work_s, 2),
            **dataclasses.asdict(tally),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="20 kills per command (the issue's campaign)")
    parser.add_argument("--kills", type=int, default=2, help="kills per command without --full [%(default)s]")
    parser.add_argument("--chain", type=int, default=2, help="kills in a row before a rerun runs to the end")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments [%(default)s]")
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--work", help="folder for the runs (default: a temporary one, removed after)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fmae-kill-"))
    start, load = time.monotonic(), load_average()
    try:
        figures = campaign(work, tuple(args.commands), 20 if args.full else args.kills, args.chain, args.seed)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": shlex.join(["python", "benchmarks/reliability/kill.py", *sys.argv[1:]]),
        "seed": args.seed,
        "chain": args.chain,
        "machine": {"cpu": cpu_name(), "load_before": load, "load_after": load_average()},
        "wall_s": round(time.monotonic() - start, 1),
        "commands": figures,
    }
    text = json.dumps(report, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(text)
    faults = ("crashes", "hangs", "partial_files", "differing_reruns", "lost_outputs")
    return 1 if any(f[k] for f in figures.values() for k in faults) else 0


if __name__ == "__main__":
    sys.exit(main())
