"""What the Ansible-driven commands share: inventory/testbed options and running one playbook."""

from __future__ import annotations

import argparse

from controller.cli.common import fail


def add_ansible_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i", "--inventory", default=None, help="Ansible inventory (default: the testbed profile's inventory)"
    )
    p.add_argument(
        "--testbed",
        default=None,
        help="testbed profile (name under profiles/testbeds or a path) to check against the inventory first",
    )
    p.add_argument("--limit", default=None, help="only these hosts or groups")
    p.add_argument("--check", action="store_true", help="Ansible check mode: report what would change")
    p.add_argument("-e", "--extra-vars", action="append", metavar="KEY=VALUE", help="extra variable (repeatable)")


def run_ansible(args: argparse.Namespace, playbook: str, extra: dict, title: str) -> int:
    """Check the testbed against the inventory (with ``--testbed``), run ``playbook``, print the recap."""
    from controller.hostvalues import HostValueError, check_inventory, check_values
    from controller.profiles import ProfileError, load_testbed
    from controller.provision import ProvisionError, check_testbed, inventory_hosts, recap_table, run_playbook

    try:
        inventory = args.inventory
        if args.testbed:
            testbed = load_testbed(args.testbed)
            inventory = inventory or testbed.inventory
            problems = check_testbed(testbed, inventory)
            if problems:
                return fail(f"{testbed.path} and {inventory} disagree:\n  " + "\n  ".join(problems))
        if not inventory:
            return fail("give an inventory (-i) or a testbed profile (--testbed)")
        for item in args.extra_vars or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                return fail(f"--extra-vars {item!r}: expected KEY=VALUE")
            extra[key] = value
        check_values(extra, "--extra-vars ")
        if getattr(args, "keys", None):  # provision, deploy: every board gets its key
            from pathlib import Path

            from controller.provision import agent_names, ensure_keys

            extra["agent_keys_dir"] = str(ensure_keys(Path(args.keys), agent_names(inventory)))
        problems = [] if args.testbed else check_inventory(inventory_hosts(inventory))
        if problems:  # with --testbed, check_testbed has read the inventory and checked it
            return fail(f"{inventory}: values refused:\n  " + "\n  ".join(problems))
        recap = run_playbook(playbook, inventory, extra, check=args.check, limit=args.limit)
    except ProvisionError as exc:
        if exc.recap:
            recap_table(title, exc.recap)
        return fail(str(exc), 1)
    except ProfileError as exc:
        return fail(str(exc), 1)
    except HostValueError as exc:
        return fail(str(exc))
    recap_table(title, recap)
    return 0
