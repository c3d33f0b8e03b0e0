"""``specbed schema DIR``: a JSON Schema per profile kind, for editors (yaml-language-server)."""

from __future__ import annotations

import argparse

from controller.cli.common import add_command, dump_json, write_out


def register(sub) -> None:
    schema = add_command(
        sub,
        "schema",
        help="write a JSON Schema per profile kind into DIR (experiment, model-pair, device, testbed)",
        description="Write DIR/<kind>.schema.json for every profile kind. An editor with the YAML language "
        "server checks and completes a profile that starts with a line such as\n"
        "  # yaml-language-server: $schema=../../schemas/experiment.schema.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schema.add_argument("dir", metavar="DIR", help="folder to write the schemas into")
    schema.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from controller.profiles.schema import profile_schemas

    for kind, document in profile_schemas().items():
        print(f"wrote {write_out(args.dir, f'{kind}.schema.json', dump_json(document))}")
    return 0
