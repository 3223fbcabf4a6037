"""Is the disagreement between a CNN's four flips an error indicator? Per field, against the exact γ.

    python benchmarks/tta_spread_check.py --model sphere-1deg --fields 2 \
        --test-dirs data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso data/ho-iso-s8 data/ood-coast-iso

For each field the network runs without TTA on the grid and on its three flips (what ``--tta flips`` averages);
the spread is s = std over the four of ln γ², the error ε = γ̂²/γ² − 1 of their geometric mean (the TTA
prediction). It reports how well s ranks the cells: the correlation of ln |ε| and ln s, how many of the field's
worst cells and of its cells with |ε| > 0.01 are among the most uncertain ones, the largest |ε| left outside them
(what replacing those cells by their exact γ would leave), and how often |ε| exceeds 3 s (is s an error bar?).
"""

from __future__ import annotations

import numpy as np
from _cli import model_parser  # benchmarks/_cli.py: the options these scripts share

from diffnorm.datasets import NormalizationDataset
from diffnorm.evaluation import item_grid
from diffnorm.prediction import Predictor
from diffnorm.transforms.augmentation import TRANSFORMS, augment_cell_field, augment_grid

FLIPS = ("identity", "flip_x", "flip_y", "rot180")


def flip_log_gamma2(predictor: Predictor, grid) -> np.ndarray:
    """ln γ² of each flip's plain prediction, flipped back: ``(4, ny, nx)`` (the flips are their own inverses)."""
    return np.stack([augment_cell_field(2 * np.log(predictor.predict_grid(augment_grid(grid, t))), t) for t in FLIPS])


def field_row(eps: np.ndarray, spread: np.ndarray, share: float, worst: int) -> dict[str, float]:
    """The indicator's scores on one field's ocean cells (|ε| and s, 1-D)."""
    n_top = max(1, int(round(share * eps.size)))
    uncertain = np.zeros(eps.size, dtype=bool)
    uncertain[np.argsort(spread)[::-1][:n_top]] = True
    worst_cells = np.argsort(eps)[::-1][:worst]
    large = eps > 0.01
    return {"eps_max": eps.max(),
            # cells the model computes exactly (small components) have s = 0 and ε ≈ 0: left out of both
            "corr_log": np.corrcoef(np.log(eps[spread > 0] + 1e-12), np.log(spread[spread > 0]))[0, 1],
            "worst_in_top": int(uncertain[worst_cells].sum()),
            "large": int(large.sum()),
            "large_in_top": int((large & uncertain).sum()),
            "max_outside_top": eps[~uncertain].max(),
            "above_3s": float(np.mean(eps[spread > 0] > 3 * spread[spread > 0]))}


def main() -> None:
    ap = model_parser(__doc__, fields=2, fields_help="fields per data set")
    ap.add_argument("--share", type=float, default=0.02, help="share of ocean cells counted as most uncertain")
    ap.add_argument("--worst", type=int, default=50)
    args = ap.parse_args()
    assert set(FLIPS) <= set(TRANSFORMS)
    predictor = Predictor.load(args.model, tta="none")
    print(f"| field | ε_max (TTA) | corr(ln ε, ln s) | worst {args.worst} in top {100 * args.share:g} % | "
          f"cells with ε > 0.01 (in top) | max ε outside top | P(ε > 3 s) |")
    print("|---|---|---|---|---|---|---|")
    for directory in args.test_dirs:
        data = NormalizationDataset(directory, args.split)
        for k in range(min(args.fields, len(data))):
            item = data[k]
            grid = item_grid(item)
            logs = flip_log_gamma2(predictor, grid)[:, grid.mask]
            estimate = np.exp(logs.mean(axis=0))  # the TTA γ² (geometric mean)
            eps = np.abs(estimate / item["gamma"][grid.mask] ** 2 - 1)
            r = field_row(eps, logs.std(axis=0), args.share, args.worst)
            print(f"| {directory} #{k} | {r['eps_max']:.4f} | {r['corr_log']:.2f} | {r['worst_in_top']} | "
                  f"{r['large']} ({r['large_in_top']}) | {r['max_outside_top']:.4f} | {r['above_3s']:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
