"""``specbed testbed check|generate``: a testbed profile against an Ansible inventory."""

from __future__ import annotations

import argparse
import sys

from controller.cli.common import add_command, add_out_argument, fail, write_out


def register(sub) -> None:
    tb = add_command(sub, "testbed", help="check a testbed profile against an inventory, or generate one from it")
    tb_sub = tb.add_subparsers(dest="testbed_command", required=True)
    tbc = add_command(tb_sub, "check", help="exit 1 and list the differences if profile and inventory disagree")
    tbc.add_argument("testbed", help="testbed profile: a name under profiles/testbeds or a path")
    tbc.add_argument("-i", "--inventory", default=None, help="inventory (default: the profile's)")
    tbc.set_defaults(func=cmd_testbed)
    tbg = add_command(tb_sub, "generate", help="write a testbed profile from an inventory")
    tbg.add_argument("-i", "--inventory", required=True, help="Ansible inventory")
    tbg.add_argument("--name", default="testbed", help="the profile's name")
    add_out_argument(tbg, "write DIR/<name>.yaml (e.g. --out profiles/testbeds; default: print)")
    tbg.set_defaults(func=cmd_testbed)


def cmd_testbed(args: argparse.Namespace) -> int:
    import yaml

    from controller.profiles import ProfileError, load_testbed
    from controller.provision import ProvisionError, check_testbed, testbed_from_inventory

    try:
        if args.testbed_command == "generate":
            text = yaml.safe_dump(testbed_from_inventory(args.inventory, args.name), sort_keys=False)
            if args.out:
                print(f"wrote {write_out(args.out, f'{args.name}.yaml', text)}")
            else:
                print(text, end="")
            return 0
        testbed = load_testbed(args.testbed)
        inventory = args.inventory or testbed.inventory
        problems = check_testbed(testbed, inventory)
    except (ProfileError, ProvisionError) as exc:
        return fail(str(exc))
    if problems:
        print(f"{testbed.path} and {inventory} disagree:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(
        f"{testbed.path} agrees with {inventory}: controller {testbed.controller}, agents {', '.join(testbed.agents)}"
    )
    return 0
