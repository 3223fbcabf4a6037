"""Models on a pack's own training fields, paired against the first: does a stage fit the fields it trained on?

    python benchmarks/pack_fit.py PACK.npz sphere-1deg runs/x/last.pt [more models] [--every 10] [-o OUT.md]

Why: a warm-restart stage that gets worse on unseen fields could be fitting its training fields at their expense
(then it beats its source on them) or simply not have found its source's minimum again (then it does not). This
scores every ``--every``-th training field of a pack (``benchmarks/pack_fields.py``, ``fresh_fields.py``) with each
model, without TTA, and prints the paired view of ``compare_stages.py``: the geometric mean over fields of
model / first model, its standard error and how many fields fell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compare_stages.py, beside this file
from compare_stages import paired  # noqa: E402
from pack_fields import read_fields  # noqa: E402

from diffnorm.metrics import sample_metrics  # noqa: E402
from diffnorm.pretrained import load_model, predict_gamma  # noqa: E402
from diffnorm.transforms.inputs import grid_from_fields  # noqa: E402

METRICS = ("max", "mean", "rmse")


def training_fields(pack: str, every: int = 1):
    """The pack's training fields (every ``every``-th), as :func:`pack_fields.read_fields` gives them."""
    return read_fields(pack, "train", every)


def score(pack: str, models: list[str], every: int = 1) -> list[dict[tuple[str, int], dict[str, float]]]:
    """Per model, ``{("train", i): metrics}`` of each selected training field (no TTA)."""
    loaded = [load_model(m) for m in models]
    out: list[dict] = [{} for _ in models]
    for i, f in enumerate(training_fields(pack, every)):
        grid = grid_from_fields(f)
        for table, (model, meta) in zip(out, loaded, strict=True):
            gamma = predict_gamma(model, meta, grid, steps=f["steps"], tta="none")
            table[("train", i)] = sample_metrics(gamma, f["gamma"], f["mask"] > 0)
    return out


def markdown(models: list[str], tables: list[dict], every: int) -> str:
    n = len(tables[0])
    lines = [f"{n} training fields of the pack (every {every}th), no TTA; paired against `{models[0]}`: geometric "
             "mean of model / first over the fields ± its standard error, and the fields that fell", "",
             "| model | metric | mean | paired ratio | fields lower |", "|---|---|---:|---:|---:|"]
    for metric in METRICS:
        for name, table in zip(models, tables, strict=True):
            mean = np.mean([v[metric] for v in table.values()])
            p = next(iter(paired(tables[0], table, metric).values()))
            lines.append(f"| `{name}` | {metric} | {mean:.4g} | {p['ratio']:.4f} ± {p['se']:.4f} | "
                         f"{p['lower']}/{p['n']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pack")
    p.add_argument("models", nargs="+", help="shipped names, .pt or .ckpt; the first is the reference")
    p.add_argument("--every", type=int, default=1, help="score every N-th training field (default: all)")
    p.add_argument("-o", "--output", help="also write the table to this Markdown file")
    a = p.parse_args()
    if not Path(a.pack).is_file():
        p.error(f"pack {a.pack} not found")
    text = markdown(a.models, score(a.pack, a.models, a.every), a.every)
    print(text)
    if a.output:
        Path(a.output).write_text(text)


if __name__ == "__main__":
    main()
