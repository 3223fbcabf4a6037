"""Where a trained CNN's error is by latitude: mean and max |ε| in bands of |latitude|, per test set.

    python benchmarks/cnn_error_by_latitude.py --model sphere-1deg \
        --test-dirs data/te-sphere-iso data/ho-iso-s8 data/ood-coast-iso data/ho-polar80-iso \
        --fields 4 -o benchmarks/results/cnn_latitude.md
    # ocean up to the poles (data/ho-polar90-iso): the model refuses such grids unless forced
    python benchmarks/cnn_error_by_latitude.py --test-dirs data/ho-polar90-iso --fields 2 --force \
        --bands 0 60 70 75 80 85 90 -o benchmarks/results/cnn_latitude_polar90.md

On a regular lat-lon grid the cells shrink towards the poles (area ∝ cos φ), so the scale-free inputs and the
coasts of high latitudes are the least like the bulk of the ocean: this table says whether a model holds there.
ε = γ̂²/γ² − 1 (SPEC §3) against the exact γ stored in the data sets, with the model's own test-time augmentation
unless ``--tta none``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _cli import model_parser  # benchmarks/_cli.py: the options these scripts share

DEFAULT_BANDS = (0.0, 60.0, 70.0, 75.0, 80.0, 90.0)


def band_labels(bands: Sequence[float]) -> list[str]:
    """Column titles for the |latitude| bands ``[bands[k], bands[k + 1])``."""
    return [f"{a:g}–{b:g}°" for a, b in zip(bands[:-1], bands[1:], strict=True)]


def band_errors(abs_lat: np.ndarray, eps: np.ndarray, bands: Sequence[float]) -> list[tuple[int, float, float]]:
    """Per band ``[a, b)`` of |latitude| (the last band includes b): ocean cells, mean and max |ε|.

    ``abs_lat`` and ``eps`` hold the ocean cells only (same length); an empty band gives ``(0, nan, nan)``.
    """
    if abs_lat.shape != eps.shape:
        raise ValueError(f"abs_lat has shape {abs_lat.shape} but eps has shape {eps.shape}")
    edges = np.asarray(bands, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bands must be at least two increasing latitudes, got {list(bands)}")
    out = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        upper = abs_lat <= b if k == edges.size - 2 else abs_lat < b
        sel = (abs_lat >= a) & upper
        out.append((int(sel.sum()), float(eps[sel].mean()), float(eps[sel].max())) if sel.any()
                   else (0, float("nan"), float("nan")))
    return out


def format_row(name: str, limit: str, per_band: list[tuple[int, float, float]]) -> str:
    """One markdown row: per band mean / max |ε| and the band's share of the ocean cells."""
    ocean = sum(n for n, _, _ in per_band)
    cells = [f"{mean:.2e} / {top:.2e} ({100 * n / ocean:.1f} %)" if n else "–" for n, mean, top in per_band]
    return f"| {name} | {limit} | " + " | ".join(cells) + " |"


def polar_limit(manifest: dict) -> str:
    """The land-beyond latitude of a ``sphere`` data set (its family's default 70° when not given), else "–"."""
    if manifest.get("family") != "sphere":
        return "–"
    return f"{manifest.get('family_params', {}).get('polar_limit', 70.0):g}°"


def main() -> None:
    from diffnorm.evaluation import iter_split
    from diffnorm.generation import load_manifest
    from diffnorm.metrics import relative_error
    from diffnorm.pretrained import load_model, predict_gamma

    ap = model_parser(__doc__, fields=4, fields_help="fields per test directory (pooled in its row)",
                      output="benchmarks/results/cnn_latitude.md")
    ap.add_argument("--bands", type=float, nargs="+", default=list(DEFAULT_BANDS),
                    help="edges of the |latitude| bands, degrees")
    ap.add_argument("--tta", default="model", help="model (its own), none or flips")
    ap.add_argument("--force", action="store_true",
                    help="predict even where the inputs lie far outside the training data (cells near a pole)")
    args = ap.parse_args()

    model, meta = load_model(args.model)
    lines = [f"Model `{args.model}` (TTA: {args.tta}): mean / max |ε| by |latitude| band (share of the ocean cells), "
             f"pooled over the first {args.fields} fields of each set; `polar limit`: land poleward of it.", "",
             "| test set | polar limit | " + " | ".join(band_labels(args.bands)) + " |",
             "|---|---|" + "---|" * (len(args.bands) - 1)]
    for d in args.test_dirs:
        steps, n, fields = iter_split(d, args.split, args.fields)
        lats, errs = [], []
        for grid, reference, _ in fields:
            gamma = predict_gamma(model, meta, grid, steps, tta=args.tta, force=args.force)
            errs.append(np.abs(relative_error(gamma, reference, grid.mask)))
            lats.append(np.abs(np.asarray(grid.lat)[grid.mask]))
        per_band = band_errors(np.concatenate(lats), np.concatenate(errs), args.bands)
        lines.append(format_row(f"{Path(d).name} ({n})", polar_limit(load_manifest(d)), per_band))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
