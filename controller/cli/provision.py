"""``specbed provision`` (site.yml) and ``specbed deploy`` (deploy.yml)."""

from __future__ import annotations

import argparse

from controller.cli.common import add_command
from controller.cli.playbook import add_ansible_arguments, run_ansible

KEYS_HELP = (
    "the controller's keys folder (made with `specbed keys` if it has no controller.key): each board gets "
    "its own secret key and the controller's public key, mode 0600"
)


def register(sub) -> None:
    prov = add_command(sub, "provision", help="set up every host: site.yml (OS, venv, GPU check, boards, agents)")
    add_ansible_arguments(prov)
    prov.add_argument("--pair", default="smollm2-135m", help="model pair whose drafter files go to the boards")
    prov.add_argument("--keys", default=None, metavar="DIR", help=KEYS_HELP)
    prov.set_defaults(func=cmd_provision)
    dep = add_command(sub, "deploy", help="install or update specbed and model files on the boards: deploy.yml")
    add_ansible_arguments(dep)
    dep.add_argument("--pair", default="smollm2-135m", help="model pair whose drafter files go to the boards")
    dep.add_argument("--keys", default=None, metavar="DIR", help=KEYS_HELP)
    dep.set_defaults(func=cmd_deploy)


def _with_wheel(args: argparse.Namespace, playbook: str, title: str) -> int:
    """Run ``playbook`` with a freshly built wheel and the drafter's files; the wheel's folder goes after."""
    import shutil

    from controller.provision import deploy_vars, work_dir

    wheel_dir = work_dir()
    try:
        return run_ansible(args, playbook, deploy_vars(args.pair, wheel_dir), title)
    finally:
        shutil.rmtree(wheel_dir, ignore_errors=True)


def cmd_provision(args: argparse.Namespace) -> int:
    return _with_wheel(args, "site.yml", "specbed provision (site.yml)")


def cmd_deploy(args: argparse.Namespace) -> int:
    return _with_wheel(args, "deploy.yml", "specbed deploy (deploy.yml)")
