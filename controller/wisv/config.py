"""Checks of a generation's WISV fields that cross fields or need a file (the types are pydantic's)."""

from __future__ import annotations

from pathlib import Path

VERIFICATIONS = ("strict", "semantic")
#: What moves the decision threshold between its good- and poor-channel values (``controller.wisv.head``).
THRESHOLD_CSI = ("rate", "snr", "constant")


def resolve_head(ref: str) -> Path:
    """A head file named in a profile: a path, or relative to profiles/."""
    from controller.profiles.loaders.files import PROFILES_DIR

    path = Path(ref)
    return path if path.is_absolute() or path.exists() else PROFILES_DIR / ref


def check_wisv(path: Path, g, where: str = "generation") -> None:
    """``ProfileError`` naming the field for WISV settings that cannot run."""
    from agent.protocol import HIDDEN_DTYPES, HIDDEN_UPLOADS
    from controller.profiles.base import ProfileError

    for name, allowed in (
        ("verification", VERIFICATIONS),
        ("hidden_upload", HIDDEN_UPLOADS),
        ("hidden_dtype", tuple(HIDDEN_DTYPES)),
        ("wisv_threshold", THRESHOLD_CSI),
    ):
        if getattr(g, name) not in allowed:
            raise ProfileError(
                f"{path}: {where}.{name}: expected one of {', '.join(allowed)}, got {getattr(g, name)!r}"
            )
    for name in ("wisv_threshold_good", "wisv_threshold_poor"):
        value = getattr(g, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
            raise ProfileError(
                f"{path}: {where}.{name}: expected a number in [0, 2] (above 1: never accept), got {value!r}"
            )
    if g.verification != "semantic":
        return
    if g.temperature != 0:
        raise ProfileError(
            f"{path}: {where}.temperature: semantic verification is greedy (temperature 0), got {g.temperature}"
        )
    if g.batching not in ("auto", "off") or g.bandwidth_policy != "none":
        raise ProfileError(
            f"{path}: {where}.batching: semantic verification verifies one payload per forward pass "
            f"(batching off, no bandwidth policy), got batching={g.batching}, bandwidth_policy={g.bandwidth_policy}"
        )
    if not isinstance(g.wisv_head, str) or not resolve_head(g.wisv_head).is_file():
        raise ProfileError(f"{path}: {where}.wisv_head: semantic verification needs a head file, got {g.wisv_head!r}")
