"""Mutated real videos through ``preprocess``, ``extract`` and ``predict``, and the verdict on each.

A case is one mutated file (:mod:`video_mutations`) fed to one command. ``preprocess`` and
``extract`` take folders, so their cases go in batches: one folder of mutants plus an intact
real clip (the *canary*), one run of the real command line (``python -m fmae.<command>``)
under a wall-clock bound. ``predict`` takes one video per run: its cases go through
:mod:`predict_many` (the command's ``main`` on each video in one process, so torch loads
once) and a sample of them through the real command line, one process each.

The verdict on a case (:class:`Verdict`):

- ``status``: what the command recorded (``ok``, ``no_face``, ``unreadable``, ``empty``,
  ``timeout``, …), or ``refused`` when a one-video command answered with one ``error:``
  line and exit status 2;
- ``crash``: a traceback, or an ``error`` record (an exception that only the per-video
  safety net caught), or a worker that died;
- ``hang``: the run was killed at its bound with this case unanswered;
- ``lost``: no record although the run finished, an ``ok`` record whose files are missing or
  unreadable, or, charged to every case of its batch, a canary that did not finish ``ok``.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bounded_run import Finished, one_clear_error, run_bounded
from safetensors.torch import load_file
from valid_files import Fixtures
from video_mutations import KINDS, Seed, mutate

from fmae.data.clips import count_frames
from fmae.data.preprocess import read_manifest

COMMANDS: tuple[str, ...] = ("preprocess", "extract", "extract_cropped", "predict")
"""Where a case goes: ``extract_cropped`` is ``extract --cropped`` (the video read as face crops)."""
CANARY = "single_face.mp4"
"""The intact real clip in every batch: 72 frames with a face in each."""
CANARY_FRAMES = 72
BATCH = {"preprocess": 25, "extract": 15, "extract_cropped": 25, "predict": 20}
"""Cases per run of a command (``predict``: per process of :mod:`predict_many`)."""
SECONDS_PER_CASE = 60.0
"""The bound a case adds to its run's wall clock (a run also gets :data:`STARTUP_S`)."""
STARTUP_S = 120.0
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class VideoCase:
    """One mutated video for one command."""

    index: int
    id: str
    kind: str
    seed: str
    detail: str
    command: str
    suffix: str
    changed: bool
    """Its bytes differ from the seed's (a fault was injected)."""

    @property
    def file(self) -> str:
        """Its file name in the batch folder."""
        return f"{self.id}{self.suffix}"


@dataclass
class Verdict:
    """What became of a case (see the module docstring)."""

    case: VideoCase
    status: str = ""
    crash: bool = False
    hang: bool = False
    lost: bool = False
    message: str = ""
    seconds: float | None = None
    cli: bool = False
    """It went through ``python -m fmae.<command>`` itself (batches always do; predict's sample)."""


@dataclass
class Batch:
    """One run of a command over several cases, and what it cost."""

    command: str
    cases: list[VideoCase]
    finished: Finished | None = None
    canary_ok: bool = True
    verdicts: list[Verdict] = field(default_factory=list)


class Planner:
    """Draws the cases of a run: case ``i`` from ``random.Random(f"{master_seed}:{i}")``, the
    kinds taken in turn, each command getting its ``shares`` of the cases, so any one case is
    rebuilt alone (:meth:`draw`) and no mutant is held longer than its batch runs. Face-crop
    seeds (``.avi``) go mostly to ``extract_cropped``."""

    def __init__(self, seeds: list[Seed], master_seed: int, shares: dict[str, float]) -> None:
        self.seeds, self.master_seed = seeds, master_seed
        self.commands = [c for c in COMMANDS if shares.get(c, 0) > 0]
        self.weights = [shares[c] for c in self.commands]
        self.crops = [s for s in seeds if s.suffix == ".avi"]
        self.short = [s for s in seeds if "-first" in s.name]

    def draw(self, i: int) -> tuple[VideoCase, bytes]:
        """Case ``i`` and its mutated bytes."""
        rng = random.Random(f"{self.master_seed}:{i}")
        kind = KINDS[i % len(KINDS)]
        command = rng.choices(self.commands, self.weights)[0]
        if command == "extract_cropped" and self.crops and rng.random() < 0.8:
            seed = rng.choice(self.crops)
        else:
            seed = rng.choice(self.short if self.short and rng.random() < 0.75 else self.seeds)
        mutant = mutate(kind, seed, rng, self.seeds)
        changed = mutant.data != seed.data
        case = VideoCase(
            i, f"v{self.master_seed}-{i:05d}", kind, seed.name, mutant.detail, command, seed.suffix, changed
        )
        return case, mutant.data

    def plan(self, count: int) -> list[VideoCase]:
        """The first ``count`` cases (their bytes are drawn again when their batch runs)."""
        return [self.draw(i)[0] for i in range(count)]


def _bound(cases: int) -> float:
    return STARTUP_S + SECONDS_PER_CASE * cases


def _write_batch(folder: Path, cases: list[tuple[VideoCase, bytes]], canary: Path | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for case, data in cases:
        (folder / case.file).write_bytes(data)
    if canary is not None:
        (folder / canary.name).write_bytes(canary.read_bytes())


def _unanswered(verdict: Verdict, run: Finished) -> None:
    """A case without a record: a hang when its run was killed at the bound, else lost, and a
    crash too when the run ended in a traceback."""
    verdict.hang = run.timed_out
    verdict.lost = not run.timed_out
    verdict.crash = "Traceback" in run.stderr
    verdict.message = run.stderr.strip().splitlines()[-1][:300] if run.stderr.strip() else f"exit {run.returncode}"


def _judge_preprocess(batch: Batch, out: Path) -> None:
    records = read_manifest(out)
    canary = records.get(CANARY, {})
    batch.canary_ok = canary.get("status") == "ok" and canary.get("frames") == CANARY_FRAMES
    for case in batch.cases:
        verdict = Verdict(case, cli=True)
        rec = records.get(case.file)
        if rec is None:
            _unanswered(verdict, batch.finished)
        else:
            verdict.status, verdict.message, verdict.seconds = rec["status"], rec.get("message", ""), rec.get("seconds")
            verdict.crash = rec["status"] == "error"
            if rec["status"] == "ok":
                verdict.lost = not _cache_intact(out, rec)
        verdict.lost |= not batch.canary_ok
        batch.verdicts.append(verdict)


def _cache_intact(out: Path, rec: dict) -> bool:
    """An ``ok`` record's crops decode to the frames it says, and its region maps exist."""
    try:
        frames = count_frames(out / rec["video"])
    except (ValueError, FileNotFoundError, TypeError, KeyError):
        return False
    return frames == rec["frames"] and all((out / rec[k]).is_file() for k in ("regions",) if rec.get(k))


def _judge_extract(batch: Batch, out: Path) -> None:
    def record(name: str) -> dict | None:
        try:
            return json.loads((out / f"{name}.features.json").read_text())
        except (OSError, ValueError):
            return None

    canary = record(CANARY)
    batch.canary_ok = canary is not None and canary.get("status") == "ok"
    for case in batch.cases:
        verdict = Verdict(case, cli=True)
        rec = record(case.file)
        if rec is None:
            _unanswered(verdict, batch.finished)
        else:
            verdict.status, verdict.message, verdict.seconds = rec["status"], rec.get("message", ""), rec.get("seconds")
            verdict.crash = rec["status"] == "error"
            if rec["status"] == "ok":
                verdict.lost = not _features_intact(out / f"{case.file}.features.safetensors", rec)
        verdict.lost |= not batch.canary_ok
        batch.verdicts.append(verdict)


def _features_intact(path: Path, rec: dict) -> bool:
    """An ``ok`` record's features load, one row per window it lists, all finite."""
    try:
        features = load_file(str(path))["features"]
    except Exception:  # noqa: BLE001 - any failure to read it back is a lost output
        return False
    return len(features) == len(rec.get("windows", [])) > 0 and bool(features.isfinite().all())


def run_folder_batch(
    batch: Batch, cases: list[tuple[VideoCase, bytes]], work: Path, fx: Fixtures, canary: Path
) -> None:
    """One run of ``preprocess`` or ``extract`` (``--cropped`` for ``extract_cropped``) over the
    batch's mutants and the canary, judged into ``batch.verdicts``."""
    src, out = work / "in", work / "out"
    _write_batch(src, cases, canary)
    python = [sys.executable, "-m"]
    if batch.command == "preprocess":
        argv = [*python, "fmae.preprocess", str(src), str(out), "--size", "64", "--no-progress"]
    else:
        argv = [*python, "fmae.extract", str(src), "--weights", str(fx.encoder), "--out-dir", str(out)]
        argv += ["--device", "cpu", "--dtype", "fp32", "--no-progress"]
        argv += ["--cropped"] if batch.command == "extract_cropped" else []
    batch.finished = run_bounded(argv, _bound(len(cases) + 1), work / "log")
    if batch.command == "preprocess":
        _judge_preprocess(batch, out)
    else:
        _judge_extract(batch, out)


def run_predict_batch(
    batch: Batch, cases: list[tuple[VideoCase, bytes]], work: Path, fx: Fixtures, canary: Path, cli_sample: int
) -> None:
    """The batch's mutants through ``predict``: each in :mod:`predict_many`, the first
    ``cli_sample`` also through ``python -m fmae.predict``; the canary must predict."""
    _write_batch(work / "in", cases, canary)
    videos = [work / "in" / case.file for case, _ in cases] + [work / "in" / canary.name]
    flags = ["--probe", str(fx.probe), "--checkpoint", str(fx.encoder), "--device", "cpu", "--dtype", "fp32"]
    answers = work / "answers.jsonl"
    argv = [sys.executable, str(HERE / "predict_many.py"), str(answers), str(work / "out"), *map(str, videos), "--"]
    batch.finished = run_bounded([*argv, *flags], _bound(len(videos)), work / "log")
    got = {}
    if answers.is_file():
        got = {a["video"]: a for a in map(json.loads, answers.read_text().splitlines())}
    canary_answer = got.get(str(videos[-1]), {})
    batch.canary_ok = canary_answer.get("returncode") == 0
    for k, (case, _) in enumerate(cases):
        verdict = Verdict(case)
        answer = got.get(str(videos[k]))
        if answer is None:
            _unanswered(verdict, batch.finished)
        else:
            _judge_answer(verdict, answer["returncode"], answer["stderr"], answer["outputs"])
            verdict.seconds = answer["seconds"]
        if k < cli_sample:
            _predict_cli(verdict, videos[k], flags, work / f"cli-{case.id}")
        verdict.lost |= not batch.canary_ok
        batch.verdicts.append(verdict)


def _judge_answer(verdict: Verdict, returncode: int, stderr: str, outputs: bool) -> None:
    """A one-video run: ``ok`` with its outputs written, ``refused`` with one error line and
    exit 2, a crash otherwise."""
    if returncode == 0:
        verdict.status, verdict.lost = "ok", not outputs
    elif returncode == 2 and one_clear_error(stderr):
        verdict.status = "refused"
        verdict.message = stderr.strip().splitlines()[-1][:300]
    else:
        verdict.crash = True
        verdict.message = stderr.strip()[-300:] or f"exit {returncode}"


def _predict_cli(verdict: Verdict, video: Path, flags: list[str], out: Path) -> None:
    """The case again through ``python -m fmae.predict`` in its own process: it must answer
    as the in-process run did."""
    argv = [sys.executable, "-m", "fmae.predict", str(video), *flags, "--out-dir", str(out), "--no-progress"]
    run = run_bounded(argv, _bound(1), out / "log")
    again = Verdict(verdict.case)
    if run.timed_out:
        again.hang = True
    else:
        _judge_answer(again, run.returncode, run.stderr, (out / "summary.json").is_file())
    verdict.cli = True
    verdict.crash |= again.crash
    verdict.hang |= again.hang
    verdict.lost |= again.lost
    if again.status != verdict.status and not (again.crash or again.hang):
        verdict.crash = True
        verdict.message += f" | the command line answered {again.status!r} instead"


def run_all(
    planner: Planner, planned: list[VideoCase], work: Path, fx: Fixtures, canary: Path, predict_cli_sample: int
) -> list[Batch]:
    """Every planned case through its command, in batches of :data:`BATCH`; of ``predict``'s
    cases, the first ``predict_cli_sample`` of each batch also through its command line."""
    batches = []
    for command in COMMANDS:
        mine = [case for case in planned if case.command == command]
        for start in range(0, len(mine), BATCH[command]):
            cases = [planner.draw(case.index) for case in mine[start : start + BATCH[command]]]
            batch = Batch(command, [case for case, _ in cases])
            folder = work / f"{command}-{start // BATCH[command]:03d}"
            if command == "predict":
                run_predict_batch(batch, cases, folder, fx, canary, predict_cli_sample)
            else:
                run_folder_batch(batch, cases, folder, fx, canary)
            batches.append(batch)
    return batches
