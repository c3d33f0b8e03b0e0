"""``specbed shape``: per-device uplink shaping with tc (shape.yml)."""

from __future__ import annotations

import argparse

from controller.cli.common import add_command, fail
from controller.cli.playbook import add_ansible_arguments, run_ansible


def register(sub) -> None:
    sh = add_command(sub, "shape", help="apply (or --remove) per-device uplink shaping with tc: shape.yml")
    add_ansible_arguments(sh)
    sh.add_argument("--rate", default=None, help="uplink rate for every device, e.g. 10mbit (default: host_vars)")
    sh.add_argument("--qdisc", choices=("tbf", "htb"), default=None, help="rate limiter (default: host_vars, else tbf)")
    sh.add_argument("--delay", default=None, help="netem delay, e.g. 20ms (kernels with sch_netem only)")
    sh.add_argument("--loss", default=None, help="netem loss, e.g. 1%% (kernels with sch_netem only)")
    sh.add_argument("--remove", action="store_true", help="remove the shaping")
    sh.set_defaults(func=cmd_shape)


def cmd_shape(args: argparse.Namespace) -> int:
    from controller.hostvalues import HostValueError, check_value

    try:  # these reach tc as root on every board: refused before anything runs
        for flag, key, value in (("--rate", "uplink_rate", args.rate), ("--delay", "link_delay", args.delay)):
            check_value(key, value, f"{flag}: ")
        check_value("link_loss", args.loss, "--loss: ")
    except HostValueError as exc:
        return fail(str(exc))
    extra: dict = {"link_shaping_state": "absent" if args.remove else "present"}
    for key, value in (("uplink_rate", args.rate), ("shape_qdisc", args.qdisc), ("link_delay", args.delay)):
        if value:
            extra[key] = value
    if args.loss:
        extra["link_loss"] = args.loss
    return run_ansible(args, "shape.yml", extra, "specbed shape")
