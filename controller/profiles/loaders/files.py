"""Where profiles live and the checks every loader shares: a file's YAML, a field's type, unknown fields with a suggestion."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from controller.profiles.base import ProfileError

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent.parent / "profiles"


def _resolve(ref: str, kind: str, suffix: str) -> Path:
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml", ".jsonl") or path.exists():
        return path
    return PROFILES_DIR / kind / f"{ref}{suffix}"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    return data


def _typed(path: Path, where: str, value: Any, expected: type | tuple, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ProfileError(f"{path}: {where}: expected {what}, got {value!r} ({type(value).__name__})")
    return value


def _unknown(path: Path, where: str, data: dict, allowed: set[str] | tuple) -> None:
    extra = sorted(set(data) - set(allowed), key=str)
    if extra:
        close = difflib.get_close_matches(str(extra[0]), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProfileError(
            f"{path}: {where}: unknown field {extra[0]!r}{hint}; allowed: {', '.join(sorted(map(str, allowed)))}"
        )


def _positive_quantity(path: Path, where: str, value: Any, parse, what: str) -> float:
    """A positive number with optional units (``parse`` from agent.link); errors name the field."""
    from agent.link import LinkError

    try:
        number = parse(value)
    except LinkError as exc:
        raise ProfileError(f"{path}: {where}: {exc}") from None
    if not number > 0:
        raise ProfileError(f"{path}: {where}: expected a positive {what}, got {value!r}")
    return number
