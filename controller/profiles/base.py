"""The base of every profile model and the translation of pydantic's errors into ``ProfileError``.

Messages keep the shape users know: ``FILE: FIELD: expected WHAT, got VALUE``
and ``FILE: WHERE: unknown field 'x' (did you mean 'y'?); allowed: ...``.
A field's ``description`` says what it expects (it is also the text an
editor shows from the JSON Schema).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class ProfileError(Exception):
    """A profile that cannot be used; the message names the file and the field."""


class Profile(BaseModel):
    """Strict types (no "2" for 2, no 1 for true), no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


def where_of(loc: tuple) -> str:
    """``("sweep", "top_k", 1)`` -> ``sweep.top_k[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field(model: type[BaseModel], loc: tuple) -> Any:
    """The ``FieldInfo`` at ``loc`` in ``model`` (following nested models), or None."""
    info = None
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return info if isinstance(part, str) and not part[:1].isalpha() else None
        info = fields[part]
        current = _model_in(info.annotation)
    return info


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside an annotation such as ``Foo | None`` or ``dict[str, Foo]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed(model: type[BaseModel], loc: tuple) -> list[str]:
    parent = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(parent, "model_fields", {})
        if part not in fields:
            break
        parent = _model_in(fields[part].annotation)
    return sorted(getattr(parent, "model_fields", {}))


def translate(exc: ValidationError, model: type[BaseModel], path: Path, kind: str) -> ProfileError:
    """The first error of ``exc`` as a ``ProfileError`` naming ``path`` and the field."""
    errors = exc.errors()
    # in a union (e.g. a name or a mapping) the branch of the input's own type says what is wrong
    # and a misspelt name explains the "missing" field it was meant to be
    err = next(
        (e for e in errors if e["type"] == "extra_forbidden"),
        next((e for e in errors if not e["type"].endswith("_type")), errors[0]),
    )
    loc = tuple(p for p in err["loc"] if not _is_tag(p))
    value = err.get("input")
    kind_ = err["type"]
    if kind_ == "extra_forbidden":
        name = str(loc[-1])
        where = where_of(loc[:-1]) or kind
        allowed = _allowed(model, loc[:-1])
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ProfileError(f"{path}: {where}: unknown field {name!r}{hint}; allowed: {', '.join(allowed)}")
    where = where_of(loc) or kind
    if kind_ == "missing":
        info = _field(model, loc)
        what = f" ({info.description})" if info is not None and info.description else ""
        return ProfileError(f"{path}: {where}: missing{what}")
    if kind_ == "literal_error":
        options = re.findall(r"'([^']*)'", err["ctx"]["expected"])
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ProfileError(f"{path}: {where}: expected one of {', '.join(options)}, got {value!r}{hint}")
    info = _field(model, loc)
    what = info.description if info is not None and info.description else None
    if loc and isinstance(loc[-1], int):  # an item of a list: its own description, if it has one
        what = _item_description(info.annotation if info is not None else None) or _plain(err["msg"])
    what = what or _plain(err["msg"])
    return ProfileError(f"{path}: {where}: expected {what}, got {value!r} ({type(value).__name__})")


#: pydantic puts the member type of a union into the location (``int``, ``str``, a model's name)
_UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "none"}


def _is_tag(part: Any) -> bool:
    if not isinstance(part, str):
        return False
    models = {c.__name__ for c in _subclasses(Profile)}
    return part in _UNION_TAGS or "[" in part or part in models


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def _item_description(annotation: Any) -> str | None:
    """The ``description`` of an ``Annotated[..., Field(description=...)]`` inside ``annotation``."""
    for meta in getattr(annotation, "__metadata__", ()) or ():
        if getattr(meta, "description", None):
            return meta.description
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _item_description(arg)
        if found:
            return found
    return None


def _plain(msg: str) -> str:
    """pydantic's "Input should be a valid list" as "a valid list"."""
    return re.sub(r"^(input should be|value should be|input should have)\s+", "", msg.lower())


def check(model: type[BaseModel], data: Any, path: Path, kind: str) -> BaseModel:
    """``data`` validated as ``model``; a ``ProfileError`` for the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, model, path, kind) from None
