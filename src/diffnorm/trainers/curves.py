"""Learning curves from a CSVLogger ``metrics.csv``: training loss and validation SPEC §3 metrics."""

from __future__ import annotations

import csv
import os


def read_metrics(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{column: [(step, value), ...]}`` of the non-empty cells of a Lightning CSVLogger file."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            step = int(row.get("step") or 0)
            for k, v in row.items():
                if k in ("step", "epoch") or v in (None, ""):
                    continue
                out.setdefault(k, []).append((step, float(v)))
    return out


def plot_learning_curve(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, title: str = "",
                        reference: dict[str, float] | None = None) -> None:
    """Two panels: training loss (per step and per epoch) and validation ε metrics (log scale).

    ``reference`` draws horizontal lines (e.g. ``{"randomized N=1e4 ε_max": 0.057}``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(metrics_csv)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("train_loss_step", dict(alpha=0.35, lw=0.8)), ("train_loss_epoch", dict(lw=1.8)),
                       ("val_loss", dict(lw=1.8, ls="--"))):
        if key in m:
            s, v = zip(*m[key], strict=True)
            a.plot(s, v, label=key, **style)
    a.set_yscale("log")
    a.set_xlabel("optimizer step")
    a.set_title("loss")
    a.legend()
    for key in ("val_eps_max", "val_eps_q9999", "val_rmse", "val_eps_mean"):
        if key in m:
            s, v = zip(*m[key], strict=True)
            b.plot(s, v, marker=".", label=key)
    for k, (name, val) in enumerate((reference or {}).items()):
        b.axhline(val, color=f"C{k + 4}", ls=":", label=name)
    b.set_yscale("log")
    b.set_xlabel("optimizer step")
    b.set_title("validation ε (SPEC §3)")
    b.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
