"""``specbed keys``: CURVE key pairs for the controller and its agents (SECURITY.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.cli.common import add_command, fail


def register(sub) -> None:
    keys = add_command(
        sub,
        "keys",
        help="enrol the controller and agents: CURVE key pairs (SECURITY.md)",
        description="Write DIR/controller.key(_secret) (kept if present) and DIR/agents/NAME.key(_secret) for "
        "every NAME (replaced: that is how a key is rotated). Secrets are mode 0600.",
    )
    keys.add_argument("--dir", required=True, metavar="DIR", help="the keys folder")
    keys.add_argument("--agents", required=True, help="agent names, comma-separated (as in --name / agent_name)")
    keys.set_defaults(func=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    from controller.keys import KeysError, make_keys

    names = [n.strip() for n in args.agents.split(",") if n.strip()]
    if not names:
        return fail("--agents needs at least one agent name")
    try:
        written = make_keys(Path(args.dir), names)
    except (KeysError, OSError) as exc:
        return fail(str(exc))
    for path in written:
        print(f"wrote {path}")
    print(
        f"controller: --keys {args.dir}; each agent: --key {args.dir}/agents/NAME.key_secret "
        f"--server-key {args.dir}/controller.key (SECURITY.md)"
    )
    return 0
