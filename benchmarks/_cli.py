"""The command-line options every model-on-data-sets benchmark script shares (one place for their names/defaults)."""

from __future__ import annotations

import argparse


def model_parser(doc: str | None, *, fields: int | None = None, fields_help: str = "fields per test directory",
                 output: str | bool | None = None) -> argparse.ArgumentParser:
    """A parser with ``--model``, ``--test-dirs``, ``--split``, ``--fields`` when given a default, and ``-o/--output``
    (the Markdown table) when given one: a path, or True for an optional output without a default."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--model", default="sphere-1deg", help="a shipped model's name or a .pt/.ckpt path")
    ap.add_argument("--test-dirs", nargs="+", required=True, help="data set folders to evaluate on")
    ap.add_argument("--split", default="test", help="which split of each data set")
    if fields is not None:
        ap.add_argument("--fields", type=int, default=fields, help=fields_help)
    if output is True:
        ap.add_argument("-o", "--output", help="also write the table to this Markdown file")
    elif output:
        ap.add_argument("-o", "--output", default=output, help="the Markdown table (default: %(default)s)")
    return ap
