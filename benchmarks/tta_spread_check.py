"""Is the disagreement between a CNN's four flips an error indicator? Per field, against the exact γ.

    python benchmarks/tta_spread_check.py --model sphere-1deg --fields 2 \
        --test-dirs data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso data/ho-iso-s8 data/ood-coast-iso

For each field the network runs without TTA on the grid and on its three flips (what ``--tta flips`` averages);
the spread is s = std over the four of ln γ², the error ε = γ̂²/γ² − 1 of their geometric mean (the TTA
prediction). It reports how well s ranks the cells: the correlation of ln |ε| and ln s, how many of the field's
worst cells and of its cells with |ε| > 0.01 are among the most uncertain ones, the largest |ε| left outside them
(what replacing those cells by their exact γ would leave), and how often |ε| exceeds 3 s (is s an error bar?).

It also splits the TTA error into what the four flips share and what averaging them can still remove. In
ln γ², the TTA error e = mean of the four minus the truth; if each flip erred by a shared part plus its own
independent noise, the noise left in e would be estimated by v/4 (v: the four's sample variance). The "noise
share" is mean(v/4) / mean(e²): over all ocean cells, over the field's worst 0.1 % (by |e|) and at its worst
cell. A share near 1 means more views (flips, ensembles of similar networks) would keep lowering the error; near
0 means every view is wrong the same way there, which the script also counts at each field's worst cell ("all four
same sign"). A summary line gives the means over all fields.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _cli import model_parser  # benchmarks/_cli.py: the options these scripts share

from diffnorm.evaluation import iter_split
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


def view_noise(logs: np.ndarray, truth: np.ndarray, tail: float = 0.001) -> dict[str, float]:
    """How much of the TTA error in ln γ² the flips' own noise explains (module docstring): ``logs`` ``(4, n)``
    the flips' ln γ² on the predicted ocean cells, ``truth`` ``(n,)`` the exact ln γ²."""
    err = logs.mean(axis=0) - truth
    noise = logs.var(axis=0, ddof=1) / logs.shape[0]
    sq = err ** 2
    n_tail = max(1, int(round(tail * err.size)))
    worst = np.argsort(sq)[::-1][:n_tail]
    top = worst[0]
    signs = np.sign(logs[:, top] - truth[top])
    with np.errstate(invalid="ignore", divide="ignore"):  # a field predicted exactly: 0/0, NaN shares
        return {"share_all": noise.mean() / sq.mean(),
                "share_tail": noise[worst].mean() / sq[worst].mean(),
                "share_max": noise[top] / sq[top],
                "max_same_sign": bool(np.all(signs == signs[0]) and signs[0] != 0)}


def main() -> None:
    ap = model_parser(__doc__, fields=2, fields_help="fields per data set", output=True)
    ap.add_argument("--share", type=float, default=0.02, help="share of ocean cells counted as most uncertain")
    ap.add_argument("--worst", type=int, default=50)
    args = ap.parse_args()
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    assert set(FLIPS) <= set(TRANSFORMS)
    predictor = Predictor.load(args.model, tta="none")
    emit(f"| field | ε_max (TTA) | corr(ln ε, ln s) | worst {args.worst} in top {100 * args.share:g} % | "
         f"cells with ε > 0.01 (in top) | max ε outside top | P(ε > 3 s) | noise share: all / worst 0.1 % / worst "
         f"cell | worst cell: all four same sign |")
    emit("|---|---|---|---|---|---|---|---|---|")
    noise_rows = []
    for directory in args.test_dirs:
        _, _, fields = iter_split(directory, args.split, args.fields)
        for k, (grid, reference, _) in enumerate(fields):
            logs = flip_log_gamma2(predictor, grid)[:, grid.mask]
            truth = 2 * np.log(reference[grid.mask])
            estimate = np.exp(logs.mean(axis=0))  # the TTA γ² (geometric mean)
            eps = np.abs(estimate / np.exp(truth) - 1)
            spread = logs.std(axis=0)
            r = field_row(eps, spread, args.share, args.worst)
            predicted = spread > 0  # cells computed exactly (small components) are left out
            n = view_noise(logs[:, predicted], truth[predicted])
            noise_rows.append(n)
            emit(f"| {directory} #{k} | {r['eps_max']:.4f} | {r['corr_log']:.2f} | {r['worst_in_top']} | "
                 f"{r['large']} ({r['large_in_top']}) | {r['max_outside_top']:.4f} | {r['above_3s']:.3f} | "
                 f"{n['share_all']:.2f} / {n['share_tail']:.2f} / {n['share_max']:.2f} | "
                 f"{'yes' if n['max_same_sign'] else 'no'} |")
    same = sum(n["max_same_sign"] for n in noise_rows)
    emit(f"\nMeans over {len(noise_rows)} fields: noise share {np.mean([n['share_all'] for n in noise_rows]):.2f} "
         f"(all cells), {np.mean([n['share_tail'] for n in noise_rows]):.2f} (worst 0.1 %), "
         f"{np.mean([n['share_max'] for n in noise_rows]):.2f} (worst cell); all four flips err the same way at the "
         f"worst cell in {same} of {len(noise_rows)} fields.")
    if args.output:
        sets = " ".join(args.test_dirs)
        header = (f"# `benchmarks/tta_spread_check.py --model {args.model} --fields {args.fields} --test-dirs {sets}`"
                  f" ({predictor.name}, {predictor.meta.get('training', {}).get('steps', '?')} training steps)\n\n")
        Path(args.output).write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
