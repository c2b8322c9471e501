"""Run configurations as dataclasses: YAML in, YAML out, every field a CLI flag.

Each command's config lives beside the run it configures and is built with
:func:`setting`; defaults live in the dataclass and nowhere else. A run's settings come from, in order
of precedence: command-line flags, the ``--config`` YAML file, a named preset (``--preset``,
where the dataclass has ``PRESETS``), the defaults.

A value of the wrong type, in a flag or in the YAML (text where a number goes, a list, ``null``,
``nan`` or ``inf`` where a finite number goes), and a YAML file that does not parse are
``ValueError`` with the setting's name, before the config is built: the commands print them as
one line, never as a traceback from deep inside a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def setting(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A config field: its default, the ``--help`` text of its flag, and its allowed values (if a choice)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def check_choices(config: Any) -> None:
    """Raise ``ValueError`` for a field whose value is not among its declared choices."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            raise ValueError(f"{f.name} must be one of {choices}, got {getattr(config, f.name)!r}")


def _flag_type(tp: Any) -> Any:
    return {"bool": _parse_bool, "float": _parse_float}.get(getattr(tp, "__name__", str(tp)), tp)


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):  # float() takes "nan", "inf" and "1e999"
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config`` and one ``--field-name`` flag per field of dataclass ``cls``;
    a bool flag alone means true (``--finetune``), and takes ``true``/``false`` too."""
    parser.add_argument("--config", type=Path, help="YAML file of settings (flags override it)")
    presets: dict[str, dict[str, Any]] = getattr(cls, "PRESETS", {})
    if presets:
        described = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in p.items()) for name, p in presets.items())
        parser.add_argument(
            "--preset",
            choices=sorted(presets),
            help=f"a named set of settings under --config and the flags ({described})".replace("%", "%%"),
        )
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group("settings (default in brackets)")
    for f in dataclasses.fields(cls):
        switch = {"nargs": "?", "const": True} if hints[f.name] is bool else {}
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=_flag_type(hints[f.name]),
            choices=f.metadata.get("choices"),
            default=None,
            metavar=None if f.metadata.get("choices") else hints[f.name].__name__.upper(),
            help=f"{f.metadata.get('help', '')} [{f.default}]".replace("%", "%%"),  # argparse formats with %
            **switch,
        )


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Build ``cls`` from defaults, then ``args.preset`` (a key of ``cls.PRESETS``), then
    ``args.config``, then the flags given."""
    values: dict[str, Any] = dict(getattr(cls, "PRESETS", {}).get(getattr(args, "preset", None) or "", {}))
    if getattr(args, "config", None) is not None:
        values.update(load_yaml(cls, args.config))
    values.update(
        {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    )
    return cls(**values)


def load_yaml(cls: type, path: str | Path) -> dict[str, Any]:
    """The fields of ``cls`` set in a YAML file, each checked against its field's type (see
    :func:`checked`); an unknown key is an error, not a silent typo. ``FileNotFoundError`` for
    a missing file, ``ValueError`` for anything else wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a YAML file of settings")
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text file: {e}") from e
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    return {name: checked(name, hints[name], value, f"{path}: ") for name, value in data.items()}


def checked(name: str, tp: Any, value: Any, where: str = "") -> Any:
    """``value`` for a field ``name`` of type ``tp`` (``bool``, ``int``, ``float`` or ``str``;
    other types pass as they are): a number for a text field becomes its text (``values:
    0.9`` in YAML), an int for a float field a float, and so does the text of a number (YAML
    1.1 reads ``lr: 1e-4`` as text: its floats need a dot); anything else of the wrong type,
    and a float that is not finite, is a ``ValueError`` that names the setting (``where`` first)."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{where}{name} must be true or false, got {shown}")
    if tp is int and not (number and isinstance(value, int)):
        raise ValueError(f"{where}{name} must be a whole number, got {shown}")
    if tp is float:
        try:
            as_float = float(value) if number or isinstance(value, str) else math.nan
        except OverflowError:  # an int beyond any float
            as_float = math.inf
        except ValueError:  # text that is no number
            as_float = math.nan
        if not math.isfinite(as_float):
            raise ValueError(f"{where}{name} must be a finite number, got {shown}")
        return as_float
    if tp is str:
        if number:
            return str(value)
        if not isinstance(value, str):
            raise ValueError(f"{where}{name} must be text, got {shown}")
    return value


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
