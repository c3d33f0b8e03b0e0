"""Task answers and exact-match scoring, so that a lossy verifier's accuracy drop shows.

A prompt set for scoring is a prompts JSONL whose lines also carry
``answer`` (the reference string).  The scorer counts an output right when
the reference appears in it as a whole word, ignoring case ("The capital of
Japan is Tokyo." is right for "Tokyo"; "Bottles." is wrong for "bottle").
The shipped set ``profiles/prompts/wisv.jsonl`` (copy a word, capital
cities, sums of two digits) was chosen so that the bundled target, verified
strictly, is right on most prompts (README, WISV).
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def load_answers(prompts_path: str | Path) -> dict[str, str]:
    """prompt id -> reference answer, for the lines of a prompts JSONL that have one."""
    answers = {}
    for line in Path(prompts_path).read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            if isinstance(obj, dict) and isinstance(obj.get("answer"), str) and "id" in obj:
                answers[str(obj["id"])] = obj["answer"]
    return answers


def score(text: str, answer: str) -> int:
    """1 if ``answer`` occurs in ``text`` as a whole word (case-insensitive), else 0."""
    pattern = r"(?<![0-9A-Za-z])" + re.escape(answer.strip()) + r"(?![0-9A-Za-z])"
    return int(re.search(pattern, text, flags=re.IGNORECASE) is not None)


def answer_key(text: str, answer: str) -> tuple[int, str]:
    """What a collected label compares: the score and the text's first line, normalised."""
    first = text.strip().splitlines()[0].strip().lower() if text.strip() else ""
    return score(text, answer), first
