"""Prompt sets (``profiles/prompts/NAME.jsonl``) and an experiment's filters over them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.profiles.base import ProfileError
from controller.profiles.loaders.files import _resolve, _typed, _unknown


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str | None  # text, chat template applied when the model has one
    prompt_token_ids: list[int] | None  # or token ids given directly
    task: str | None = None  # chat, code, maths, summarisation, translation, ...
    where: str = ""  # file:line it was read from, for errors found later (token ids vs the target's vocabulary)


def load_prompts(ref: str) -> list[Prompt]:
    path = _resolve(ref, "prompts", ".jsonl")
    if not path.is_file():
        raise ProfileError(f"{path}: no such prompts file")
    prompts = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ProfileError(f"{where}: expected a JSON object with a 'prompt' field")
        text, ids = obj.get("prompt"), obj.get("prompt_token_ids")
        if text is None and ids is None:
            raise ProfileError(f"{where}: prompt: missing (or give prompt_token_ids)")
        if text is not None and not isinstance(text, str):
            raise ProfileError(f"{where}: prompt: expected a string")
        if ids is not None and not (isinstance(ids, list) and ids):
            raise ProfileError(f"{where}: prompt_token_ids: expected a non-empty list of token ids")
        for t in ids or []:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2**63:
                raise ProfileError(f"{where}: prompt_token_ids: {t!r} is not a token id (an integer in [0, 2^63))")
        task = obj.get("task")
        if task is not None and not isinstance(task, str):
            raise ProfileError(f"{where}: task: expected a string")
        prompts.append(Prompt(str(obj.get("id", f"p{len(prompts)}")), text, ids, task, where))
    if not prompts:
        raise ProfileError(f"{path}: no prompts")
    if len({p.id for p in prompts}) != len(prompts):
        raise ProfileError(f"{path}: id: prompt ids must be unique")
    return prompts


def check_token_ids(prompts: list[Prompt], vocab_size: int) -> None:
    """Refuse, before anything starts, a prompt whose token ids the target's vocabulary does not hold."""
    for p in prompts:
        bad = next((t for t in p.prompt_token_ids or [] if t >= vocab_size), None)
        if bad is not None:
            raise ProfileError(
                f"{p.where or 'prompts'}: prompt {p.id!r}: token id {bad} is outside the target's vocabulary "
                f"of {vocab_size} ids"
            )


PROMPT_FIELDS = {"source", "tasks", "per_task", "limit", "ids"}


def select_prompts(path: Path, spec: Any) -> tuple[list[Prompt], str]:
    """An experiment's ``prompts``: a set's name or path, or a mapping that filters one.

    Mapping fields: ``source`` (name or path), ``tasks`` (keep these task
    kinds, in this order), ``per_task`` (the first N of each task),
    ``limit`` (the first N overall), ``ids`` (exactly these prompts).
    """
    if isinstance(spec, str):
        return load_prompts(spec), str(_resolve(spec, "prompts", ".jsonl"))
    if not isinstance(spec, dict):
        raise ProfileError(f"{path}: prompts: expected the name or path of a prompts JSONL file, or a mapping")
    _unknown(path, "prompts", spec, PROMPT_FIELDS)
    source = _typed(path, "prompts.source", spec.get("source"), str, "the name or path of a prompts JSONL file")
    prompts = load_prompts(source)
    if "ids" in spec:
        ids = _typed(path, "prompts.ids", spec["ids"], list, "a list of prompt ids")
        by_id = {p.id: p for p in prompts}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ProfileError(f"{path}: prompts.ids: {missing[0]!r} is not in {source}")
        prompts = [by_id[i] for i in ids]
    if "tasks" in spec:
        tasks = _typed(path, "prompts.tasks", spec["tasks"], list, "a list of task kinds")
        known = sorted({p.task for p in prompts if p.task})
        for t in tasks:
            if t not in known:
                raise ProfileError(
                    f"{path}: prompts.tasks: {t!r} is not a task of {source} (tasks: {', '.join(known)})"
                )
        prompts = [p for t in tasks for p in prompts if p.task == t]
    if "per_task" in spec:
        n = _typed(path, "prompts.per_task", spec["per_task"], int, "a positive integer")
        if n < 1:
            raise ProfileError(f"{path}: prompts.per_task: expected a positive integer, got {n}")
        seen: dict[str | None, int] = {}
        kept = []
        for p in prompts:
            seen[p.task] = seen.get(p.task, 0) + 1
            if seen[p.task] <= n:
                kept.append(p)
        prompts = kept
    if "limit" in spec:
        n = _typed(path, "prompts.limit", spec["limit"], int, "a positive integer")
        if n < 1:
            raise ProfileError(f"{path}: prompts.limit: expected a positive integer, got {n}")
        prompts = prompts[:n]
    if not prompts:
        raise ProfileError(f"{path}: prompts: the filters leave no prompt")
    return prompts, str(_resolve(source, "prompts", ".jsonl"))
