"""Where a trained CNN's error is: mean and max |ε| by distance to the coast and by local coast geometry.

    python benchmarks/cnn_error_by_coast_distance.py --model sphere-1deg \
        --test-dirs data/te-sphere-iso data/te-sphere-study --fields 3 -o benchmarks/results/cnn_coast_distance.md

Distance: |Δi| + |Δj| to the nearest land cell (a closed edge counts as land), 1 = shares a face with land.
Geometry: :func:`diffnorm.features.coast_classes` (how many of a cell's faces are closed, and whether two closed
faces meet in a corner or face each other across a one-cell-wide channel), pooled over all fields, with the share of
the fields' worst cells in each class.
ε = γ̂²/γ² − 1 (SPEC §3) against the exact γ stored in the data sets; the images prior (what the network
corrects) is shown beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _cli import model_parser  # benchmarks/_cli.py: the options these scripts share

from diffnorm.datasets import NormalizationDataset
from diffnorm.features import COAST_CLASSES, coast_classes, grid_signed_distance
from diffnorm.metrics import relative_error
from diffnorm.pretrained import load_model, predict_gamma
from diffnorm.transforms.inputs import grid_from_fields
from diffnorm.transforms.targets import TargetTransform

BINS = ((1, 1), (2, 2), (3, 5), (6, 10**9))


def geometry_table(classes: list, errors: dict[str, list], worst_cells: list, worst: int) -> list[str]:
    """Markdown lines: per coast class, its share of ocean cells, mean / max |ε| per method, share of worst cells
    (per field: ocean-cell class codes, |ε| of each method, and the cnn's worst-cell flags)."""
    code = np.concatenate(classes)
    is_worst = np.concatenate(worst_cells)
    methods = list(errors)
    eps = {k: np.concatenate(v) for k, v in errors.items()}
    out = ["", f"By local coast geometry, pooled over the {len(classes)} fields above: mean / max |ε|, and the "
           f"share of the fields' {worst} worst cells (cnn) in each class.", "",
           "| geometry | ocean cells | " + " | ".join(methods) + f" | worst {worst} |",
           "|---|---|" + "---|" * len(methods) + "---|"]
    for c, name in enumerate(COAST_CLASSES):
        sel = code == c
        if c == 0 or not sel.any():
            continue
        out.append(f"| {name} | {100 * sel.mean():.2f} % | "
                   + " | ".join(f"{eps[k][sel].mean():.2e} / {eps[k][sel].max():.2e}" for k in methods)
                   + f" | {100 * is_worst[sel].sum() / is_worst.sum():.0f} % |")
    return out


def main() -> None:
    ap = model_parser(__doc__, fields=3, output="benchmarks/results/cnn_coast_distance.md")
    ap.add_argument("--worst", type=int, default=200, help="count of each field's worst cells to locate")
    args = ap.parse_args()

    model, meta = load_model(args.model)
    tt = TargetTransform.from_dict(meta.get("target_transform") or {"kind": meta["target"]})
    lines = [f"Model `{args.model}`: mean / max |ε| by |Δi| + |Δj| distance to land (share of ocean cells), and "
             f"the share of each field's {args.worst} worst cells within 2 cells of land.", "",
             "| field | method | " + " | ".join(f"d = {a}" if a == b else (f"d ≥ {a}" if b > 10**8 else f"d = {a}–{b}")
                                            for a, b in BINS) + f" | worst {args.worst} at d ≤ 2 |",
             "|---|---|" + "---|" * len(BINS) + "---|"]
    classes: list = []
    errors: dict[str, list] = {}
    worst_cells: list = []
    for d in args.test_dirs:
        ds = NormalizationDataset(d, args.split)
        for k in range(min(args.fields, len(ds))):
            item = ds[k]
            grid = grid_from_fields(item)
            ocean = grid.mask
            dist = np.abs(grid_signed_distance(grid, "manhattan"))[ocean]
            classes.append(coast_classes(grid)[ocean])
            estimates = {"cnn": predict_gamma(model, meta, grid, int(item["steps"])),
                         "images prior": tt.prior(grid, int(item["steps"]))}
            for name, gamma in estimates.items():
                eps = np.abs(relative_error(gamma, item["gamma"], ocean))
                cells = []
                for a, b in BINS:
                    sel = (dist >= a) & (dist <= b)
                    cells.append(f"{eps[sel].mean():.2e} / {eps[sel].max():.2e} ({100 * sel.mean():.0f} %)" if sel.any()
                                 else "–")
                worst = np.argsort(-eps)[:args.worst]
                errors.setdefault(name, []).append(eps)
                if name == "cnn":
                    worst_cells.append(np.zeros(eps.size, bool))
                    worst_cells[-1][worst] = True
                lines.append(f"| {Path(d).name}/{k} | {name} | " + " | ".join(cells)
                             + f" | {100 * (dist[worst] <= 2).mean():.0f} % |")
    lines += geometry_table(classes, errors, worst_cells, args.worst)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
