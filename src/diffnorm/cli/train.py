"""``diffnorm train {fit,validate,test} --config configs/NAME.yaml``: LightningCLI (README, "Training CNNs")."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", add_help=False,
                       help="train a CNN with Lightning: train fit --config configs/best.yaml "
                            "(all LightningCLI options; train --help)")
    p.set_defaults(func=_train, accepts_extra=True)


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    from ..trainers.cli import cli_main

    cli_main(list(extra) if extra else ["--help"])
    return 0
