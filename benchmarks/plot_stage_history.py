"""How the shipped `sphere-1deg` grew: test error against training time, stage by stage (a PNG and a table).

    python benchmarks/plot_stage_history.py --model sphere-1deg \
        --metrics benchmarks/results/best-cpu/stages-test-metrics.csv -o docs/img/sphere_1deg_stages.png

Steps, minutes and what changed come from the model's own meta data (``training.stages``); the test metrics of
each stage (50 test fields, TTA flips) from the CSV, whose ``source`` column says where each was measured. The
plot draws ε_max and ε_mean against cumulative CPU minutes, with the issue's goal, randomized N = 10⁴ and the
seed study's best CNN as horizontal lines, so the plateau (or its end) can be seen at a glance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from diffnorm.plots import _plt, _save  # the headless backend and save of the project's own figures
from diffnorm.pretrained import load_model

# reference lines: (label, ε_max, ε_mean); randomized on 12 of the test fields, the study on its own test set
REFERENCES = (("goal", 1e-2, 1e-3), ("randomized N = 10⁴", 5.85e-2, 1.12e-2),
              ("seed study's best CNN", 4.24e-2, 3.72e-3))


def change_of(stage: dict, before: dict | None) -> str:
    """A few words on what a stage changed against the one before (from its meta data)."""
    if before is None:
        return "from scratch"
    words = []
    for key, name in (("filters", "filters"), ("blocks", "blocks"), ("training_fields", "fields")):
        now, then = stage.get(key), before.get(key)
        if now is not None and now != then:
            words.append(f"{now} {name}")
    draw = stage.get("fields_draw")
    if draw and draw != before.get("fields_draw") and stage.get("training_fields") == before.get("training_fields"):
        words.append(f"{stage['training_fields']} fields, a new draw")  # as many fields as before, but new ones
    if stage.get("patch_size") and stage.get("patch_size") != before.get("patch_size"):
        words.append("full-height patches")
    if stage.get("wrap_patches") and not before.get("wrap_patches"):
        words.append("patches across the seam")
    return ", ".join(words) or "new patches"


def stage_table(stages: list[dict], metrics: pd.DataFrame) -> pd.DataFrame:
    """One row a stage: its steps and minutes, the cumulative ones, what changed, and its test metrics.

    Raises ValueError naming the stages the metrics lack or have in excess (the two must describe one model)."""
    numbers = set(range(1, len(stages) + 1))
    missing, extra = sorted(numbers - set(metrics["stage"])), sorted(set(metrics["stage"]) - numbers)
    if missing or extra:
        raise ValueError(f"test metrics and the model's {len(stages)} stages disagree: missing stages {missing}, "
                         f"unknown stages {extra}")
    rows = [{"stage": k + 1, "steps": int(s["steps"]), "cpu_minutes": float(s["cpu_minutes"]),
             "change": change_of(s, stages[k - 1] if k else None)} for k, s in enumerate(stages)]
    table = pd.DataFrame(rows)
    table["total_steps"] = table["steps"].cumsum()
    table["total_minutes"] = table["cpu_minutes"].cumsum()
    return table.merge(metrics.drop(columns="source", errors="ignore"), on="stage")


def plot_stages(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    """ε_max and ε_mean against cumulative CPU minutes, the reference lines, and each change of network or data."""
    fig, axes = _plt().subplots(1, 2, figsize=(11, 4.2), sharex=True)
    x = table["total_minutes"].to_numpy()
    for ax, col, k in ((axes[0], "eps_max", 1), (axes[1], "eps_mean", 2)):
        ax.plot(x, table[col], "o-", color="C0", ms=4, label="sphere-1deg (test, TTA)")
        for (label, *values), style in zip(REFERENCES, ("--", ":", "-."), strict=True):
            ax.axhline(values[k - 1], color="k" if label == "goal" else "0.5", ls=style, lw=1, label=label)
        data = table["change"].str.contains("fields")
        ax.plot(x[data], table.loc[data, col], "s", color="C3", ms=6, label="more training fields (count)")
        for _, row in table[data].iterrows():  # short labels below the curve: the stages are close together
            ax.annotate(f"{row['change'].split(' fields')[0].split(', ')[-1]}", (row["total_minutes"], row[col]),
                        fontsize=7, xytext=(0, -11), textcoords="offset points", ha="center", va="top", color="C3")
        for _, row in table[(table["change"] != "new patches") & ~data].iterrows():
            ax.annotate(row["change"], (row["total_minutes"], row[col]), fontsize=7, rotation=30,
                        xytext=(4, 6), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("cumulative training time (CPU minutes)")
        ax.set_ylabel({"eps_max": "ε_max", "eps_mean": "ε_mean"}[col])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| stage | change | steps | minutes | total minutes | ε_Q9999 | ε_max | ε_mean |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in table.iterrows():
        lines.append(f"| {r['stage']} | {r['change']} | {r['steps']} | {r['cpu_minutes']:.0f} | "
                     f"{r['total_minutes']:.0f} | {r['eps_q9999']:.3g} | {r['eps_max']:.3g} | {r['eps_mean']:.2e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sphere-1deg")
    ap.add_argument("--metrics", default="benchmarks/results/best-cpu/stages-test-metrics.csv")
    ap.add_argument("-o", "--output", default="docs/img/sphere_1deg_stages.png")
    args = ap.parse_args()
    _, meta = load_model(args.model)
    table = stage_table(meta["training"]["stages"], pd.read_csv(args.metrics))
    gain = np.log(table["eps_max"].iloc[-2] / table["eps_max"].iloc[-1]) / table["cpu_minutes"].iloc[-1] * 60
    plot_stages(table, args.output, f"{args.model}: test error by stage ({int(table['total_steps'].iloc[-1])} steps)")
    print(markdown(table))
    print(f"\nlast stage: ε_max {100 * abs(gain):.1f} % {'lower' if gain >= 0 else 'higher'} per CPU hour; "
          f"wrote {args.output}")


if __name__ == "__main__":
    main()
