"""A run's folder: manifest, per-round records, outputs and the summary.

Rounds and outputs are appended and flushed as they happen, so a crash
loses at most the round in flight.

Files:
``manifest.json``  profile, versions, git commit, host facts of every process
``rounds.jsonl``   one object per verification round (see ``RoundRecord``)
``outputs.jsonl``  per prompt: prompt_id, prompt_token_ids, token_ids, text
``summary.json``   summary.csv's rows and each distributed point's live totals and rates (``summarise``)

(the whole folder: ``controller.experiment.folder``)
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from controller.phases import AGENT_PHASES, CONTROLLER_PHASES, PHASES  # noqa: F401  (re-exported for callers)
from controller.records import read_jsonl  # noqa: F401  (re-exported for callers)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RoundRecord:
    """One round.  ``*_ns`` are monotonic nanoseconds: ``agent_*`` on the
    agent's clock, ``ctrl_*`` on the controller's.  Bytes are ZMTP frame
    bytes (body plus frame header) of the payload and of the verdict."""

    agent: str
    prompt_id: str
    request_id: int
    round: int
    draft_length: int  # γ
    accepted: int  # drafts accepted
    emitted: int  # tokens added to the output this round (accepted + next, truncated at the end)
    next_kind: str  # "recovered" | "bonus"
    bytes_up: int
    bytes_down: int
    agent_draft_start_ns: int
    agent_draft_end_ns: int
    agent_send_ns: int
    agent_prev_verdict_recv_ns: int
    agent_prev_rollback_done_ns: int
    ctrl_recv_ns: int
    ctrl_decoded_ns: int
    ctrl_target_done_ns: int
    ctrl_verified_ns: int
    ctrl_reply_ns: int
    tail_mass: float  # mean probability mass outside the top K over the γ drafts
    tv_distance: float | None = None  # mean TV(sampled q, server's q̃) over the drafts, from the drafter
    clock_offset_ns: int | None = None  # agent minus controller clock when recorded
    phases: dict | None = None  # PHASES -> [start, end] on the controller's clock (ns)
    point: str | None = None  # the experiment grid point (``specbed run``)
    channel: dict | None = None  # link state on an emulated link: rate_bps, snr_db, up_s, down_s
    next_draft_length: int | None = None  # γ the policy chose for the agent's next round
    predicted_goodput: float | None = None  # tokens/s the policy's model predicts at its choice
    alpha_estimate: float | None = None  # the policy's running acceptance estimate
    batch_size: int = 1  # payloads verified in the same target forward pass
    band_hz: float | None = None  # the agent's share of a shared uplink band when this round was sent
    wisv: dict | None = None  # WISV semantic verification (lossy): see controller.wisv.semantic
    expected_acceptance: list | None = None  # [γ] Σ min(p, q) where q is exactly what was sampled
    expected_acceptance_topk: dict | None = None  # dense rounds: {K: [γ]} had the drafter sampled top-K
    top_k: int | None = None  # K the payload carried (the agent's echo of CONFIGURE's top_k; vocabulary when dense)


def host_facts() -> dict[str, Any]:
    """What a reader of the results needs to know about the host that ran a process."""
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
    }
    try:
        facts["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        facts["memory_bytes"] = None
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        facts["accelerator"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        facts["torch"] = None
    return facts


#: Distributions whose version shapes a measurement (numbers, timing, sampling, the wire).
MEASURING_PACKAGES = (
    "specbed",
    "torch",
    "transformers",
    "safetensors",
    "accelerate",
    "gguf",
    "numpy",
    "pyzmq",
    "msgpack",
    "psutil",
    "nvidia-ml-py",
    "jetson-stats",
)


def versions() -> dict[str, str | None]:
    """Installed version of each of ``MEASURING_PACKAGES`` (None: not installed)."""
    out: dict[str, str | None] = {}
    for dist in MEASURING_PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the specbed checkout, and whether it had local changes."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def write_json_atomic(path: Path, obj: dict) -> Path:
    """Write JSON through a temporary file, so a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def summarise(
    rounds: list[RoundRecord], vocab_size: int, wall_s: float, errors: dict[str, int], agents: dict[str, Any]
) -> dict[str, Any]:
    """Totals over a run.  Rates use the generation wall time ``wall_s``; acceptance figures as vLLM's
    (``controller.acceptance_metrics``)."""
    from controller.acceptance_metrics import acceptance_figures

    drafted = sum(r.draft_length for r in rounds)
    accepted = sum(r.accepted for r in rounds)
    emitted = sum(r.emitted for r in rounds)
    up = sum(r.bytes_up for r in rounds)
    down = sum(r.bytes_down for r in rounds)
    n = len(rounds)
    return {
        "tokens_generated": emitted,
        "rounds": n,
        "draft_tokens": drafted,
        "accepted_draft_tokens": accepted,
        "mean_tokens_per_round": emitted / n if n else None,
        "acceptance_rate": accepted / drafted if drafted else None,
        "bytes_up": up,
        "bytes_down": down,
        "bytes_up_per_draft_token": up / drafted if drafted else None,
        "bytes_down_per_round": down / n if n else None,
        "full_distribution_bytes_per_draft_token": vocab_size * 4,
        "mean_tail_mass": sum(r.tail_mass for r in rounds) / n if n else None,
        "wall_s": wall_s,
        "tokens_per_second": emitted / wall_s if wall_s > 0 else None,
        "errors": dict(errors),
        "errors_total": sum(errors.values()),
        "agents": agents,
        "bytes_note": "ZMTP 3 frame bytes (msgpack body + frame header) as received; TCP/IP headers excluded",
        **acceptance_figures(rounds),
    }


def load_run(run_dir: str | Path) -> Any:
    """A run folder as pandas DataFrames (``controller.rundata.Run``); needs the ``data`` extra."""
    from controller.rundata import load_run as load

    return load(run_dir)
