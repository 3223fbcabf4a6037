"""Is a trained CNN's error biased, and where are the field maxima? Mean signed ε by coast class and latitude,
the sign of each field's worst cells, and the class, distance to land and latitude of each field's worst cell.

    python benchmarks/cnn_error_bias.py --model sphere-1deg \
        --test-dirs data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso data/te-sphere-study \
        -o benchmarks/results/cnn_error_bias.md

A bias (a class of cells, or a band of latitude, whose γ the network sets too high or too low on average) could be
taken off after the network by a calibration fitted on validation fields. If the mean signed ε of every group is
small against its mean |ε|, and each field's worst cells are as often too high as too low, no such calibration
can lower ε_max. ε = γ̂²/γ² − 1 (SPEC §3) against the exact γ stored in the data sets; classes from
:func:`diffnorm.features.coast_classes` (cells with no ocean neighbour are left out: they are computed exactly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _cli import model_parser  # benchmarks/_cli.py: the options these scripts share

LAT_BANDS = ((0, 40), (40, 55), (55, 62), (62, 70), (70, 90))


def group_rows(eps: np.ndarray, groups: np.ndarray, names: dict) -> list[str]:
    """One Markdown row a group: cells, mean signed ε, mean |ε|, their ratio, share of ε > 0, max |ε|."""
    rows = []
    for g, name in names.items():
        sel = groups == g
        if not sel.any():
            continue
        e = eps[sel]
        mean_abs = np.abs(e).mean()
        rows.append(f"| {name} | {sel.sum()} | {e.mean():+.2e} | {mean_abs:.2e} | {e.mean() / mean_abs:+.3f} | "
                    f"{(e > 0).mean():.2f} | {np.abs(e).max():.3f} |")
    return rows


def worst_sign_shares(eps_by_field: list[np.ndarray], worst: int) -> np.ndarray:
    """Share of each field's ``worst`` largest-|ε| cells whose ε is positive (γ too high)."""
    return np.array([(e[np.argsort(-np.abs(e))[:worst]] > 0).mean() for e in eps_by_field])


def maxima_summary(eps_by_field: list[np.ndarray], classes: list[np.ndarray], dists: list[np.ndarray],
                   lats: list[np.ndarray], class_names: tuple[str, ...]) -> list[str]:
    """Where each field's largest |ε| lies: counts by coast class, by distance to land and by band of |latitude|."""
    at = [int(np.argmax(np.abs(e))) for e in eps_by_field]
    cls = [class_names[c[i]] for c, i in zip(classes, at, strict=True)]
    dist = np.array([d[i] for d, i in zip(dists, at, strict=True)])
    lat = np.array([la[i] for la, i in zip(lats, at, strict=True)])
    n = len(at)
    by_class = ", ".join(f"{name} {cls.count(name)}" for name in class_names if cls.count(name))
    capped = np.minimum(dist, 5)
    by_dist = ", ".join(f"{'≥ ' if d == 5 else ''}{d} cell{'s' if d > 1 else ''}: {int((capped == d).sum())}"
                        for d in range(1, 6) if (capped == d).any())
    by_lat = ", ".join(f"{a}–{b}°: {int(((lat >= a) & (lat < b)).sum())}" for a, b in LAT_BANDS)
    return [f"Each field's worst cell ({n} fields) by coast class: {by_class}; by distance to land: {by_dist}; "
            f"by |latitude|: {by_lat}."]


def main() -> None:
    from diffnorm.evaluation import iter_split
    from diffnorm.features import COAST_CLASSES, coast_classes, grid_signed_distance
    from diffnorm.metrics import relative_error
    from diffnorm.pretrained import load_model, predict_gamma

    ap = model_parser(__doc__, fields=10**6, fields_help="fields per test directory (default: all)",
                      output="benchmarks/results/cnn_error_bias.md")
    ap.add_argument("--worst", type=int, default=50, help="count of each field's worst cells whose sign is counted")
    args = ap.parse_args()

    model, meta = load_model(args.model)
    eps_by_field, classes, dists, lats = [], [], [], []
    for d in args.test_dirs:
        steps, _, fields = iter_split(d, args.split, args.fields)
        for grid, reference, file in fields:
            gamma = predict_gamma(model, meta, grid, steps)
            eps_by_field.append(relative_error(gamma, reference, grid.mask))
            classes.append(coast_classes(grid)[grid.mask])
            dists.append(np.abs(grid_signed_distance(grid, "manhattan"))[grid.mask])
            lats.append(np.abs(np.asarray(grid.lat)[grid.mask]))
            print(f"{Path(d).name}/{file}: eps_max {np.abs(eps_by_field[-1]).max():.4f}", flush=True)
    eps, cls, lat = np.concatenate(eps_by_field), np.concatenate(classes), np.concatenate(lats)
    keep = cls != COAST_CLASSES.index("isolated")
    band = np.digitize(lat, [b for _, b in LAT_BANDS[:-1]])
    header = ["| cells | count | mean ε | mean abs(ε) | ratio | share ε > 0 | max abs(ε) |",
              "|---|---|---|---|---|---|---|"]
    coast_names = {i: n for i, n in enumerate(COAST_CLASSES) if n not in ("land", "isolated")}
    shares = worst_sign_shares(eps_by_field, args.worst)
    lines = [f"Model `{args.model}` on {len(eps_by_field)} fields ({', '.join(Path(d).name for d in args.test_dirs)}):"
             " the mean signed ε = γ̂²/γ² − 1 of each group of cells against its mean |ε|.", "",
             "By local coast geometry (`diffnorm.features.coast_classes`):", "", *header,
             *group_rows(eps[keep], cls[keep], coast_names),
             "", "By |latitude|:", "", *header,
             *group_rows(eps, band, {i: f"{a}–{b}°" for i, (a, b) in enumerate(LAT_BANDS)}),
             "", f"Share of each field's {args.worst} worst cells with ε > 0: mean {shares.mean():.2f}, "
             f"from {shares.min():.2f} to {shares.max():.2f}; the single worst cell is too high in "
             f"{sum(float(e[np.argmax(np.abs(e))]) > 0 for e in eps_by_field)} of {len(eps_by_field)} fields.", "",
             *maxima_summary(eps_by_field, classes, dists, lats, COAST_CLASSES)]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
