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


PACKAGE_FACE = {"__init__"}


def test_the_top_level_is_the_commands_and_the_package_face():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == set(COMMANDS) | PACKAGE_FACE, (
        f"not a command of the README: {sorted(top - set(COMMANDS) - PACKAGE_FACE)}; "
        f"a README command without a module: {sorted(set(COMMANDS) - top)}"
    )


def test_every_subpackage_says_what_it_offers():
    for folder in [p for p in PACKAGE.rglob("*") if p.is_dir() and any(p.glob("*.py"))]:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder.relative_to(PACKAGE)} has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(PACKAGE)} has no docstring"


def _layers() -> list[str]:
    """The import order that CONTRIBUTING.md states, lowest first: the backticked names of its
    ``Imports go one way:`` line, which ends with the commands."""
    text = (README.parent / "CONTRIBUTING.md").read_text()
    line = re.search(r"Imports go one way[^:]*:(.*?)\.\s*$", text, re.S | re.M)
    assert line, "CONTRIBUTING.md has no 'Imports go one way:' line"
    return re.findall(r"`(\w+)`", line.group(1))


def _fmae_imports(path: Path) -> set[str]:
    """The ``fmae`` modules that ``path`` imports (``from fmae.x import y`` gives ``fmae.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name == "fmae" or name.startswith("fmae.")}


def _layer_of(module: str, layers: list[str]) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package face
    if parts[1] in layers:
        return layers.index(parts[1])
    return len(layers) if parts[1] in COMMANDS else None


def test_imports_go_one_way_as_contributing_says():
    layers = _layers()
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert sorted(layers) == subpackages, f"CONTRIBUTING's order must name every subpackage once: {subpackages}"
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("fmae", *path.relative_to(PACKAGE).with_suffix("").parts))
        own = _layer_of(module, layers)
        if own is None or path.name.startswith("_C"):
            continue  # the package face may import anything
        for imported in _fmae_imports(path):
            theirs = _layer_of(imported, layers)
            if imported in ("fmae._C", "fmae._C_cuda"):
                continue  # the compiled extension belongs to ops
            if theirs is None or theirs > own or (theirs == own == len(layers)):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "imports against the order in CONTRIBUTING.md:\n" + "\n".join(sorted(wrong))
