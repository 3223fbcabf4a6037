"""``diffnorm`` command line: one entry point, one module per group of subcommands.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``; every subcommand
sets ``func`` (called with the parsed namespace, returns an exit code). The CLI is a thin
layer: all work happens in the library modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys

DESCRIPTION = """Normalization coefficients γ of diffusion-based covariance operators on 2-D grids with coasts:
exact, randomized, analytic, or in milliseconds by a trained CNN."""
EPILOG = """typical use (each command's options: diffnorm COMMAND --help):
  # a SPEC §4 grid file: the globe at 1° with real coastlines, land beyond 70°, a random diffusivity
  diffnorm grid coast --lat -90 90 --lon 0 360 --res 1 --polar-limit 70 -o globe.nc
  # exact γ for M = 10 implicit steps, then the shipped CNN's (global 1° grids, M = 10)
  diffnorm normalize globe.nc --steps 10 --method exact -o gamma.nc
  diffnorm predict sphere-1deg globe.nc -o gamma_cnn.nc
  # SPEC §3 errors of one against the other
  diffnorm metrics gamma_cnn.nc gamma.nc"""

COMMAND_MODULES = ("core", "dataset", "evaluate", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffnorm", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args, extra) if getattr(args, "accepts_extra", False) else args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"diffnorm: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
