"""A strict grammar for every value that reaches a host through Ansible.

Rates, delays, losses, burst sizes, interface names and agent names end up
in ``tc`` command lines, file names and the agent's environment file on a
board, where the playbooks run them as root.  Each is checked here, before
any playbook runs (``specbed shape``, ``-e KEY=VALUE``, testbed profiles and
the inventory's host_vars), and again by each role's first task, so a value
such as ``1mbit; touch X #`` is refused by name wherever it comes from.
The roles' patterns (``playbooks/roles/*/tasks/validate.yml``) are the same
as these; a test keeps them equal.
"""

from __future__ import annotations

import re

_NUM = r"[0-9]+(\.[0-9]+)?"

#: Variable -> (regular expression the whole value must match, what it means).
PATTERNS: dict[str, tuple[str, str]] = {
    "uplink_rate": (
        rf"^{_NUM}(bit|kbit|mbit|gbit|tbit|kibit|mibit|gibit|tibit|bps|kbps|mbps|gbps|tbps)$",
        "a tc rate such as 10mbit or 500kbit",
    ),
    "link_delay": (rf"^{_NUM}(s|ms|us)$", "a tc time such as 20ms"),
    "uplink_latency": (rf"^{_NUM}(s|ms|us)$", "a tc time such as 50ms"),
    "link_loss": (r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%$", "a percentage from 0% to 100%, such as 1%"),
    "uplink_burst": (r"^[0-9]+(b|k|kb|m|mb|g|gb|bit|kbit|mbit|gbit)?$", "a tc size such as 32kbit or 1500b"),
    "shape_interface": (r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$", "a network interface name such as eth0"),
    "agent_name": (r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", "letters, digits, '.', '_' and '-' (at most 63)"),
    "controller_address": (r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$", "an IP address or host name"),
    "agent_device": (r"^(cpu|cuda(:[0-9]{1,2})?)$", "cpu, cuda or cuda:N"),
    "specbed_root": (r"^/[A-Za-z0-9_./-]{0,254}$", "an absolute path of letters, digits, '.', '_', '-' and '/'"),
    "agent_user": (r"^[a-z_][a-z0-9_-]{0,31}$", "a user name"),
}

#: tc accepts its units in either case ("10Mbit"); everything else is case-sensitive.
_IGNORE_CASE = {"uplink_rate", "link_delay", "uplink_latency", "uplink_burst"}
#: Values that may be empty (meaning "not set").
_MAY_BE_EMPTY = {"uplink_rate", "link_delay", "link_loss"}


class HostValueError(ValueError):
    """A value that would reach a host does not match its grammar; the message names it."""


def check_value(key: str, value: object, where: str = "") -> str:
    """``value`` as a string if it matches the grammar of ``key``; HostValueError naming it otherwise.

    Keys with no grammar pass unchanged.
    """
    if key not in PATTERNS:
        return value  # type: ignore[return-value]
    text = "" if value is None else value
    if not isinstance(text, str | int | float) or isinstance(text, bool):
        raise HostValueError(f"{where}{key}: expected a string, got {type(value).__name__} {value!r}")
    text = str(text)
    if text == "" and key in _MAY_BE_EMPTY:
        return text
    pattern, meaning = PATTERNS[key]
    if not re.fullmatch(pattern, text, re.IGNORECASE if key in _IGNORE_CASE else 0):
        raise HostValueError(f"{where}{key}: {value!r} is not {meaning}")
    return text


def check_values(values: dict, where: str = "") -> None:
    """Check every key of ``values`` that has a grammar; the first bad one raises."""
    for key, value in values.items():
        check_value(key, value, where)


def check_inventory(inventory: dict) -> list[str]:
    """Every bad value in an ``ansible-inventory --list`` dict, as "host: key: why" lines."""
    problems = []
    for host, hv in sorted(inventory.get("_meta", {}).get("hostvars", {}).items()):
        for key in sorted(set(hv) & set(PATTERNS)):
            if isinstance(hv[key], str) and "{{" in hv[key]:
                continue  # a Jinja expression: the role checks what it renders to
            try:
                check_value(key, hv[key])
            except HostValueError as exc:
                problems.append(f"{host}: {exc}")
    return problems
