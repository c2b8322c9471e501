"""Mutated weight files through FMAE's loaders, and the verdict on each.

A case mutates one file of one *target* (:data:`TARGETS`) with one kind of
:mod:`weight_mutations` and loads the target the way the commands do:

- ``encoder``, ``model``, ``converted`` (what ``fmae.convert`` wrote): :func:`fmae.weights.load_model`;
- ``probe``: :func:`fmae.downstream.predict.load_predictor` (the probe and its encoder);
- ``checkpoint``: :func:`fmae.weights.checkpoint.load_checkpoint` (``--resume``, ``evaluate``);
- ``convert_hf``, ``convert_hf_pickle``: :func:`fmae.interop.convert` of a Hugging Face folder
  (``model.safetensors``, or ``pytorch_model.bin``, and ``config.json``).

Outcomes: ``refused`` (``ValueError`` or ``FileNotFoundError``, which every command prints as
one ``error:`` line with exit status 2; ``unclear`` when its message takes several lines),
``intact`` (it loaded and equals the original: the mutation changed nothing that counts,
e.g. JSON spacing), ``wrong`` (it loaded and differs: a silent wrong load), ``crash`` (any
other exception: a traceback at the command line), and, for the foreign inputs of
``convert``, which carry no digest, ``converted`` (it converted; whether the numbers are
the source's cannot be told).

Run as a script (``python weight_cases.py FIXTURES WORK ANSWERS SEED START STOP``) it answers
cases ``START`` to ``STOP`` in one process, a JSON line each, as soon as each is done.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from bounded_run import one_clear_error, run_bounded
from valid_files import Fixtures, fixtures_in
from weight_mutations import KINDS, mutate_file

from fmae.downstream.predict import load_predictor
from fmae.interop import ConvertConfig, convert
from fmae.weights import load_model
from fmae.weights.checkpoint import load_checkpoint

TARGETS: tuple[str, ...] = ("encoder", "model", "probe", "checkpoint", "converted", "convert_hf", "convert_hf_pickle")
REFUSALS = (ValueError, FileNotFoundError)
"""What the commands turn into one ``error:`` line and exit status 2 (``fmae.runtime.cli``)."""
SECONDS_PER_CASE = 30.0
HERE = Path(__file__).resolve().parent


class WeightCase(NamedTuple):
    """One mutated file of one target, laid out in its own folder."""

    id: str
    target: str
    kind: str
    file: str
    detail: str
    changed: bool
    entry: Path
    """What the loader is given: the weights file, or the folder to convert."""


def target_files(fx: Fixtures, target: str) -> list[Path]:
    """The files that make up ``target``: the tensors file first, then its JSON."""
    tensors = {
        "encoder": fx.encoder,
        "model": fx.model,
        "probe": fx.probe,
        "checkpoint": fx.checkpoint,
        "converted": fx.converted,
        "convert_hf": fx.hf_folder / "model.safetensors",
        "convert_hf_pickle": fx.hf_pickle_folder / "pytorch_model.bin",
    }[target]
    if target == "checkpoint":
        return [tensors]
    if target.startswith("convert_"):
        return [tensors, tensors.parent / "config.json"]
    return [tensors, tensors.with_suffix(".json")]


def build_case(fx: Fixtures, master_seed: int, index: int, folder: Path) -> WeightCase:
    """Case ``index`` of run ``master_seed``, its files copied into ``folder`` with one mutated;
    rebuilt identically from the same arguments."""
    rng = random.Random(f"w{master_seed}:{index}")
    target = TARGETS[index % len(TARGETS)]
    kind = KINDS[(index // len(TARGETS)) % len(KINDS)]
    files = target_files(fx, target)
    chosen = rng.choice(files)
    is_json = chosen.suffix == ".json"
    others = [f for t in TARGETS if t != target for f in target_files(fx, t) if (f.suffix == ".json") == is_json]
    original = chosen.read_bytes()
    edited = mutate_file(kind, original, rng, rng.choice(others).read_bytes(), is_json)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).write_bytes(edited.data if f == chosen else f.read_bytes())
    entry = folder if target.startswith("convert_") else folder / files[0].name
    if target == "probe":  # the probe names its encoder; the case's copy is beside it
        entry = folder / files[0].name
    return WeightCase(
        f"w{master_seed}-{index:05d}", target, kind, chosen.name, edited.detail, edited.data != original, entry
    )


def _same(a: Any, b: Any) -> bool:
    """Equal nested values, tensors equal in dtype, shape and every bit."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _model_view(path: Path) -> Any:
    loaded = load_model(path)
    return {"state": loaded.model.state_dict(), "config": loaded.model.config.to_dict(), "decoder": loaded.has_decoder}


def _encoder_view(path: Path) -> Any:
    """What the commands use of an exported encoder: its config and the encoder's tensors (the
    decoder of an exported encoder is freshly drawn, so it is left out)."""
    loaded = load_model(path)
    state = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith(("decoder", "mask_token"))}
    return {"state": state, "config": loaded.model.config.to_dict(), "decoder": loaded.has_decoder}


def _probe_view(path: Path, encoder: Path) -> Any:
    _, probe, meta = load_predictor(path, encoder)
    return {"state": probe.state_dict(), "meta": meta, "norm": probe.norm_kind}


def loader(fx: Fixtures, target: str) -> Callable[[Path], Any]:
    """How the commands load ``target``, as a value to compare (``None`` for a conversion)."""
    if target in ("encoder", "converted"):  # the converted fixture is an encoder (its source has no decoder)
        return _encoder_view
    if target == "model":
        return _model_view
    if target == "probe":
        return lambda path: _probe_view(path, fx.encoder)
    if target == "checkpoint":
        return load_checkpoint
    return lambda folder: convert(ConvertConfig(src=str(folder), dst=str(folder / "out.safetensors"))) and None


def judge(case: WeightCase, load: Callable[[Path], Any], original: Any) -> dict:
    """Load ``case`` and compare it with ``original``: its answer (see the module docstring)."""
    start = time.perf_counter()
    message = ""
    try:
        got = load(case.entry)
    except REFUSALS as err:  # the command prints it as one line: it has to be one
        outcome = "unclear" if "\n" in str(err).strip() else "refused"
        message = f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - a traceback at the command line
        outcome, message = "crash", f"{type(err).__name__}: {err}"
    else:
        if case.target.startswith("convert_"):
            outcome = "converted"
        else:
            outcome = "intact" if _same(got, original) else "wrong"
    return {
        **case._asdict(),
        "entry": str(case.entry),
        "outcome": outcome,
        "message": message[:400],
        "seconds": round(time.perf_counter() - start, 3),
    }


def answer_cases(fx: Fixtures, work: Path, answers: Path, master_seed: int, start: int, stop: int) -> None:
    """Build, judge and forget cases ``start`` to ``stop``, appending each answer to ``answers``."""
    originals = {t: loader(fx, t)(target_files(fx, t)[0]) for t in TARGETS if not t.startswith("convert_")}
    for index in range(start, stop):
        folder = work / f"case-{index:05d}"
        case = build_case(fx, master_seed, index, folder)
        answer = judge(case, loader(fx, case.target), originals.get(case.target))
        with answers.open("a") as f:
            f.write(json.dumps(answer) + "\n")
        shutil.rmtree(folder, ignore_errors=True)


def run_all(fixtures: Path, work: Path, count: int, master_seed: int) -> list[dict]:
    """Answer ``count`` cases in worker processes (:func:`answer_cases`), each under a bound:
    a worker killed at it leaves its current case answered as a ``hang``, one killed by a
    signal (a crash in native code) as a ``crash``, and a new worker goes on from the next
    case. A worker that fails with a Python error is the harness's bug: ``RuntimeError``."""
    answers = work / "answers.jsonl"
    answers.unlink(missing_ok=True)
    done: list[dict] = []
    while len(done) < count:
        start = len(done)
        argv = [sys.executable, str(HERE / "weight_cases.py"), str(fixtures), str(work / "cases"), str(answers)]
        run = run_bounded(
            [*argv, str(master_seed), str(start), str(count)], 120 + SECONDS_PER_CASE * (count - start), work / "log"
        )
        done = [json.loads(line) for line in answers.read_text().splitlines()] if answers.is_file() else []
        if len(done) < count:
            if not run.timed_out and run.returncode > 0:
                raise RuntimeError(f"the weights fuzzer's worker failed: {run.stderr.strip()[-2000:]}")
            case = build_case(fixtures_in(fixtures), master_seed, len(done), work / "hung")
            outcome = "hang" if run.timed_out else "crash"
            message = run.stderr.strip()[-400:] or f"exit {run.returncode}"
            hung = {**case._asdict(), "entry": str(case.entry), "outcome": outcome, "message": message, "seconds": None}
            with answers.open("a") as f:
                f.write(json.dumps(hung) + "\n")
            done.append(hung)
    return done


COMMAND_OF = {
    "encoder": "extract",
    "model": "extract",
    "converted": "extract",
    "checkpoint": "extract",
    "probe": "predict",
    "convert_hf": "convert",
    "convert_hf_pickle": "convert",
}


def cli_check(fx: Fixtures, answer: dict, video: Path, master_seed: int, work: Path) -> dict:
    """A refused case again, through the command that reads its target (``extract --weights``,
    ``predict --probe``, ``convert``) in its own process: it must exit 2 with one clear error."""
    index = int(answer["id"].rsplit("-", 1)[1])
    case = build_case(fx, master_seed, index, work / "files")
    command = COMMAND_OF[case.target]
    out = work / "out"
    argv = [sys.executable, "-m", f"fmae.{command}"]
    device = ["--device", "cpu", "--dtype", "fp32", "--no-progress"]
    if command == "extract":
        argv += [str(video), "--weights", str(case.entry), "--out-dir", str(out), *device]
    elif command == "predict":
        argv += [str(video), "--probe", str(case.entry), "--checkpoint", str(fx.encoder), "--out-dir", str(out)]
        argv += device
    else:
        argv += [str(case.entry), str(out / "converted.safetensors"), "--no-progress"]
    run = run_bounded(argv, 300, work / "log")
    clear = run.returncode == 2 and one_clear_error(run.stderr)
    return {
        "id": case.id,
        "command": command,
        "returncode": run.returncode,
        "clear_error": clear,
        "hang": run.timed_out,
        "last_line": (run.stderr.strip().splitlines() or [""])[-1][:300],
    }


if __name__ == "__main__":
    folder, work, out, seed, first, last = sys.argv[1:7]
    answer_cases(fixtures_in(Path(folder)), Path(work), Path(out), int(seed), int(first), int(last))
