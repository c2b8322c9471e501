"""What every ``python -m fmae.<command>`` shares: settings from flags and YAML, logging,
and bad input reported as one ``error:`` line with an exit status instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, TypeVar

from fmae.config import add_config_args, config_from_args

C = TypeVar("C")


def run_command(parser: argparse.ArgumentParser, config_cls: type[C],
                run: Callable[[C, argparse.Namespace], int], argv: list[str] | None = None) -> int:
    """Add ``config_cls``'s flags, ``--config`` and ``--no-progress`` to ``parser``, parse
    ``argv``, build the config and return ``run(config, args)``: it does the work, prints
    what it wrote and returns the exit status. Bad input (``ValueError``, a missing file)
    prints ``error: …`` and returns 2; a run stopped by non-finite losses returns 3.
    """
    add_config_args(parser, config_cls)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(config_from_args(config_cls, args), args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
