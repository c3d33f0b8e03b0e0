"""Records that cannot lie: one run per folder, no abandoned round counted, no orphaned agent.

- A results folder holds one run: every runner refuses an ``--out`` that
  exists and is not empty (``specbed run --resume DIR`` is the one way to
  add to a folder), so a summary never describes half of its JSONL.
- A prompt whose agent is lost goes back to the queue and runs again from
  the start under a new request id; the rounds of the abandoned attempt are
  moved out of ``rounds.jsonl`` (``discarded_rounds.jsonl`` keeps them for
  the record) and counted in ``discarded_rounds``, so totals count each
  generated token once.
- Local agents die with the runner that started them, even when it is
  killed with SIGKILL: they are forks of a forkserver that exits when the
  runner does, and each has ``PR_SET_PDEATHSIG`` on it (``agent.forked``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class OutDirNotEmpty(ValueError):
    """``--out`` names a folder that already holds files; the message says what to do."""


def check_out_dir(out_dir: Path, resumable: bool = False) -> None:
    """Refuse a results folder that exists and is not empty (nothing is written to it)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        hint = f"use --resume {out_dir} to finish it, or another --out" if resumable else "give another --out"
        raise OutDirNotEmpty(f"--out {out_dir} exists and is not empty; {hint}")


def split_abandoned(rounds: Iterable[Any], final_request: dict[Any, int | None], key: Callable[[Any], Any]):
    """(kept, discarded): a round is discarded when its prompt's final request id is another one.

    ``final_request`` maps a prompt's key to the request id it finished (or
    runs) under; a key that maps to None or a negative id (schemes that run
    in the controller process, records older than request ids) keeps all its
    rounds, and so does a key that is not in the map.
    """
    kept, discarded = [], []
    for r in rounds:
        want = final_request.get(key(r))
        rid = r.get("request_id") if isinstance(r, dict) else r.request_id
        (kept if want is None or want < 0 or rid == want else discarded).append(r)
    return kept, discarded


def rewrite_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Replace a JSONL file through a temporary file (a crash leaves the old or the new one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")


def discard_abandoned(out_dir: Path, rounds: list[dict], outputs: list[dict]) -> tuple[list[dict], int]:
    """A ``specbed run`` folder's rounds without those of abandoned attempts of finished prompts.

    The abandoned rounds are appended to ``discarded_rounds.jsonl``; returns
    the rounds kept and how many were discarded (the caller rewrites
    ``rounds.jsonl`` when that is not 0).
    """
    final = {(o.get("point"), o.get("prompt_id")): o.get("request_id") for o in outputs}
    kept, discarded = split_abandoned(rounds, final, lambda r: (r.get("point"), r.get("prompt_id")))
    if discarded:
        append_jsonl(Path(out_dir) / "discarded_rounds.jsonl", discarded)
    return kept, len(discarded)


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Complete lines of a JSONL file, and how many were cut off or unreadable (a crash mid-line)."""
    if not path.is_file():
        return [], 0
    good, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return good, bad
