"""What every ``specbed`` command shares: log options, the profile argument, errors, output folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent.options import add_log_options


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand parser that accepts ``-v/--verbose`` and ``--log-level`` like every other."""
    parser = sub.add_parser(name, **kwargs)
    add_log_options(parser, suppress=True)
    return parser


def fail(message: str, code: int = 2) -> int:
    """Print ``error: message`` on stderr; the exit status (2: bad input, 1: the run failed)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def add_profile_argument(parser: argparse.ArgumentParser, default: str | None, what: str) -> None:
    """The experiment profile, given the same way to ``local``, ``serve`` and ``run``.

    A positional ``PROFILE``; ``--profile PROFILE`` is the same (older docs and scripts use it).
    """
    parser.add_argument(
        "profile",
        nargs="?",
        default=None,
        metavar="PROFILE",
        help=f"experiment profile: a name under profiles/experiments or a path{what}",
    )
    parser.add_argument("--profile", dest="profile_option", default=None, metavar="PROFILE", help="same as PROFILE")
    parser.set_defaults(profile_default=default)


def profile_of(args: argparse.Namespace) -> str | None:
    """The profile given positionally or with ``--profile``; raises ``ValueError`` when they disagree."""
    if args.profile and args.profile_option and args.profile != args.profile_option:
        raise ValueError(f"PROFILE {args.profile!r} and --profile {args.profile_option!r} disagree; give one")
    return args.profile or args.profile_option or args.profile_default


def add_out_argument(parser: argparse.ArgumentParser, help_text: str, default: str | None = None) -> None:
    """``--out DIR``: always a folder."""
    parser.add_argument("--out", default=default, metavar="DIR", help=help_text)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output on stdout, nothing else there."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout (nothing else)")


def write_out(out: str, name: str, text: str) -> Path:
    """Write ``text`` to ``out/name`` (the folder is created)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str) + "\n"
