"""The `alpamayo` command: parse the verb, hand the rest to its module in `alpamayo_jax.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from alpamayo_jax.commands import VERBS
from alpamayo_jax.commands.missing import MissingCapability
from alpamayo_jax.config.loader import OVERRIDE_PREFIX, ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpamayo",
        description="Alpamayo-R1 in JAX: data, training, evaluation, planning and export.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module_name in VERBS.items():
        module = importlib.import_module(module_name)
        sub = verbs.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def _split_extra(extra: list[str]) -> tuple[list[str], list[str]]:
    """Separate `--config.a.b=v` / `--config.a.b v` overrides from truly unknown arguments."""
    overrides, unknown = [], []
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg.startswith(OVERRIDE_PREFIX):
            if "=" not in arg and i + 1 < len(extra):
                overrides.append(f"{arg}={extra[i + 1]}")
                i += 1
            else:
                overrides.append(arg)
        else:
            unknown.append(arg)
        i += 1
    return overrides, unknown


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    module = args._module
    overrides, unknown = _split_extra(extra)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides and not getattr(module, "ACCEPTS_OVERRIDES", False):
        parser.error(f"'alpamayo {args.verb}' takes no --config.* overrides")
    try:
        return int(module.run(args, overrides) or 0)
    except ConfigError as err:
        print(f"alpamayo {args.verb}: config error: {err}", file=sys.stderr)
        return 2
    except MissingCapability as err:
        print(f"alpamayo {args.verb}: not available yet: it needs {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
