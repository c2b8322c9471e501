"""Generated flag values and YAML settings for every command, and the verdict on each.

Every field of every command's config (:data:`COMMANDS`) gets values of two sorts:

- *invalid* for any field of its type (text where a number goes, ``nan`` and ``inf`` where a
  finite number goes, a word that is not a choice, a list where a number goes in YAML, …):
  the command must refuse it with exit status 2 and one clear error line;
- *odd* but perhaps meaningful (``-1``, ``0``, ``10**20``, an empty string, a long one): the
  command may take it or refuse it, but never answers with a traceback.

YAML files add whole-document cases: malformed YAML, a document that is not a mapping, an
unknown key, a key that is not a string, bytes that are not text, a folder given as the file.

Each case is checked in this process the way the command reads its settings
(:func:`fmae.runtime.cli.run_parsed` on the flags of :func:`fmae.runtime.cli.add_command_args`,
with a run that does nothing: a value that is taken starts no work), and a seeded sample
through the real command line, ``python -m fmae.<command>``, in a process of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import random
import sys
import typing
from pathlib import Path
from typing import Any, NamedTuple

from bounded_run import one_clear_error, run_bounded

from fmae.benchmarking.gpu import GpuCheckConfig
from fmae.benchmarking.step import StepBenchConfig
from fmae.data.face_pass import PreprocessConfig
from fmae.downstream.extract import ExtractConfig
from fmae.downstream.predict import PredictConfig
from fmae.downstream.probe import ProbeConfig
from fmae.downstream.viz import VizConfig
from fmae.evaluation.evaluate import EvaluateConfig
from fmae.experiments.evidence import EvidenceConfig
from fmae.experiments.sweeps import AblationConfig
from fmae.interop import ConvertConfig
from fmae.pretraining.train import TrainConfig
from fmae.runtime.cli import add_command_args, run_parsed


class Command(NamedTuple):
    """A command line: its module, the words before its flags, and its config."""

    module: str
    words: tuple[str, ...]
    config: type


COMMANDS: dict[str, Command] = {
    "preprocess": Command("fmae.preprocess", ("SRC", "OUT"), PreprocessConfig),
    "extract": Command("fmae.extract", ("video.mp4",), ExtractConfig),
    "predict": Command("fmae.predict", (), PredictConfig),
    "convert": Command("fmae.convert", (), ConvertConfig),
    "train": Command("fmae.train", (), TrainConfig),
    "probe": Command("fmae.probe", (), ProbeConfig),
    "evaluate": Command("fmae.evaluate", (), EvaluateConfig),
    "ablate": Command("fmae.ablate", ("ratio",), AblationConfig),
    "ablate evidence": Command("fmae.ablate", ("evidence",), EvidenceConfig),
    "viz": Command("fmae.viz", (), VizConfig),
    "bench step": Command("fmae.bench", ("step",), StepBenchConfig),
    "bench gpu": Command("fmae.bench", ("gpu",), GpuCheckConfig),
}

# Flag values, by the field's type: (value, whether every field of the type must refuse it).
FLAG_VALUES: dict[str, list[tuple[str, bool]]] = {
    "int": [("abc", True), ("1.5", True), ("", True), ("1e3", True), ("0x10", True), ("nan", True), ("1 2", True)]
    + [("9" * 5000, True), ("-1", False), ("0", False), ("-2147483649", False), ("99999999999999999999", False)],
    "float": [("abc", True), ("", True), ("nan", True), ("inf", True), ("-inf", True), ("1e999", True)]
    + [("1,5", True), ("-1", False), ("0", False), ("1e-320", False), ("1e308", False)],
    "bool": [("maybe", True), ("2", True), ("", True), ("-1", True), ("TRUE", False), ("off", False)],
    "choice": [("nope", True), ("", True), ("AUTO", True), (" ", True)],
    "str": [("", False), (" ", False), ("x" * 3000, False), ("-", False), ("../..", False)],
}
# YAML values, by the field's type: (YAML text, whether every field of the type must refuse it).
YAML_VALUES: dict[str, list[tuple[str, bool]]] = {
    "int": [("[1, 2]", True), ("{a: 1}", True), ("null", True), ("abc", True), ("true", True), ("1.5", True)]
    + [(".nan", True), ("-1", False), ("0", False), ("100000000000000000000", False)],
    "float": [("[1.0]", True), ("{}", True), ("null", True), ("abc", True), ("true", True), (".nan", True)]
    + [(".inf", True), ("-.inf", True), ("1e999", True), ("1" + "0" * 400, True), ("-1", False), ("0", False)]
    + [("1e308", False), ("1e-4", False)],
    "bool": [("[true]", True), ("null", True), ("maybe", True), ("2", True), ("1.5", True)],
    "choice": [("[auto]", True), ("null", True), ("nope", True), ("7", True), ("true", True)],
    "str": [("[a]", True), ("{a: b}", True), ("null", True), ("true", True), ("7", False), ("''", False)],
}
# Whole YAML documents that no command may take.
DOCUMENTS: list[tuple[str, bytes]] = [
    ("malformed", b"a: [\n"),
    ("tab indent", b"a:\n\t- 1\n"),
    ("not a mapping", b"- 1\n- 2\n"),
    ("a scalar", b"42\n"),
    ("unknown key", b"no_such_setting: 1\n"),
    ("key not a string", b"1: 2\n"),
    ("a list as a key", b"? [a, b]\n: 1\n"),
    ("not text", bytes(range(256))),
    ("an alias loop", b"a: &x [*x]\n"),
    ("a folder", b""),
]


def field_kind(cls: type, field: dataclasses.Field) -> str:
    """``int``, ``float``, ``bool``, ``choice`` or ``str``: which values a field gets."""
    if field.metadata.get("choices"):
        return "choice"
    return getattr(typing.get_type_hints(cls)[field.name], "__name__", "str")


class SettingCase(NamedTuple):
    """One generated setting for one command."""

    id: str
    command: str
    kind: str
    """``flag``, ``yaml`` (a field's value) or ``document`` (a whole YAML file)."""
    field: str
    value: str
    must_refuse: bool


def plan() -> list[SettingCase]:
    """Every case: each field of each command with each value of its type, as a flag and in
    YAML, and each whole document for each command."""
    cases = []
    for name, command in COMMANDS.items():
        for field in dataclasses.fields(command.config):
            kind = field_kind(command.config, field)
            for value, refuse in FLAG_VALUES[kind]:
                cases.append(SettingCase(f"s{len(cases):05d}", name, "flag", field.name, value, refuse))
            for value, refuse in YAML_VALUES[kind]:
                cases.append(SettingCase(f"s{len(cases):05d}", name, "yaml", field.name, value, refuse))
        for label, _ in DOCUMENTS:
            cases.append(SettingCase(f"s{len(cases):05d}", name, "document", label, label, True))
    return cases


def arguments(case: SettingCase, folder: Path) -> list[str]:
    """The flags that give ``case`` to its command (a YAML file written into ``folder`` when it needs one)."""
    if case.kind == "flag":
        return [f"--{case.field.replace('_', '-')}={case.value}"]
    path = folder / f"{case.id}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    if case.kind == "yaml":
        path.write_text(f"{case.field}: {case.value}\n")
    elif case.value == "a folder":
        path.mkdir(exist_ok=True)
    else:
        path.write_bytes(dict(DOCUMENTS)[case.value])
    return ["--config", str(path)]


def check_in_process(case: SettingCase, folder: Path) -> dict:
    """The case through the command's settings, as the command reads them, with a run that
    does nothing; its answer: ``refused`` (exit 2, one clear error line), ``taken``, or
    ``crash`` (an exception, or an unclear answer)."""
    command = COMMANDS[case.command]
    parser = argparse.ArgumentParser(prog=f"python -m {command.module}")
    add_command_args(parser, command.config)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = run_parsed(command.config, lambda config, args: 0, parser.parse_args(arguments(case, folder)))
        except SystemExit as done:  # argparse's refusal
            code = done.code
        except Exception as e:  # noqa: BLE001 - a traceback at the command line
            return _answer(case, "crash", f"{type(e).__name__}: {e}", False)
    if code == 2 and one_clear_error(err.getvalue()):
        return _answer(case, "refused", err.getvalue().strip().splitlines()[-1], False)
    if code == 0:
        return _answer(case, "taken", "", False)
    return _answer(case, "crash", f"exit {code}: {err.getvalue().strip()[-300:]}", False)


def check_cli(case: SettingCase, folder: Path) -> dict:
    """The case through ``python -m fmae.<command>`` (only for cases that must be refused: a
    value that is taken would start the command's work)."""
    command = COMMANDS[case.command]
    argv = [sys.executable, "-m", command.module, *command.words, *arguments(case, folder), "--no-progress"]
    run = run_bounded(argv, 300, folder / f"{case.id}-log")
    if run.timed_out:
        return _answer(case, "hang", "", True)
    if run.returncode == 2 and one_clear_error(run.stderr):
        return _answer(case, "refused", run.stderr.strip().splitlines()[-1], True)
    return _answer(case, "crash", f"exit {run.returncode}: {run.stderr.strip()[-300:]}", True)


def _answer(case: SettingCase, outcome: str, message: str, cli: bool) -> dict[str, Any]:
    return {**case._asdict(), "value": case.value[:60], "outcome": outcome, "message": message[:300], "cli": cli}


def run_all(folder: Path, cli_sample: int, seed: int, limit: int | None = None) -> list[dict]:
    """Every case of :func:`plan` (or a seeded ``limit`` of them) in this process, and
    ``cli_sample`` of those that must be refused also through the command line."""
    cases = plan()
    rng = random.Random(f"settings:{seed}")
    if limit is not None and limit < len(cases):
        cases = sorted(rng.sample(cases, limit))
    answers = [check_in_process(case, folder / "files") for case in cases]
    refusable = [case for case in cases if case.must_refuse]
    for case in rng.sample(refusable, min(cli_sample, len(refusable))):
        answers.append(check_cli(case, folder / "cli"))
    return answers
