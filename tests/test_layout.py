"""The house is easy to see: every command in the README runs, commands are thin and never
import one another, and no two modules are one word in two forms (probe/probing)."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import fmae

PACKAGE = Path(fmae.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"  # the checkout's, also when fmae is installed
COMMANDS = sorted(set(re.findall(r"python -m fmae\.(\w+)", README.read_text())))


def _stem(name: str) -> str:
    """A crude English stem: enough to catch probe/probing, predict/prediction, train/trainer."""
    name = name.lower().removesuffix("s")
    for suffix in ("ation", "ition", "ion", "ing", "ize", "ise", "er", "e"):
        if name.endswith(suffix) and len(name) - len(suffix) >= 4:
            return name[: -len(suffix)]
    return name


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"] + [
        p for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").is_file() and p != PACKAGE
    ]


def test_the_readme_names_the_commands():
    assert {"train", "probe", "predict", "viz", "ablate", "preprocess", "bench", "convert", "extract"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_in_the_readme_answers_help(command, capsys):
    module = importlib.import_module(f"fmae.{command}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0 and f"python -m fmae.{command}" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_never_import_one_another(command):
    tree = ast.parse((PACKAGE / f"{command}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    others = {f"fmae.{c}" for c in COMMANDS if c != command}
    assert not imported & others, f"fmae.{command} imports the command(s) {sorted(imported & others)}"


def test_no_two_modules_are_one_word_in_two_forms():
    by_stem: dict[str, set[str]] = {}
    for path in _modules():
        name = path.stem if path.suffix else path.name
        if not name.startswith("_"):
            by_stem.setdefault(_stem(name), set()).add(name)
    twins = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    assert not twins, f"modules that are one word in two forms: {twins}"
    assert _stem("probing") == _stem("probe") and _stem("prediction") == _stem("predict")  # the check can fail
