"""Test metrics of a trained CNN (default: the shipped sphere-1deg) vs randomized N=1e4 and analytic.

    python benchmarks/bench_cnn_sphere.py --model sphere-1deg --test-dirs data/te-sphere-* \
        --randomized-fields 5 -o benchmarks/results/cnn_sphere.md

SPEC §3 metrics per field against the exact γ stored in the data sets; means (± std) over fields.
Randomized N=1e4 costs about a minute per 180x360 field, so by default it runs on the first
``--randomized-fields`` fields only (its errors depend on N, hardly on the field: relative error of v ~ sqrt(2/N)).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diffnorm.datasets import NormalizationDataset
from diffnorm.metrics import aggregate_metrics, sample_metrics
from diffnorm.normalization import randomized_normalization
from diffnorm.pretrained import load_model, predict_gamma
from diffnorm.transforms.inputs import grid_from_fields
from diffnorm.transforms.targets import analytic_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sphere-1deg")
    ap.add_argument("--test-dirs", nargs="+", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--randomized-fields", type=int, default=5)
    ap.add_argument("--randomized-from", help="data set whose first fields get the randomized method "
                    "(default: the first test directory); results are cached in OUTPUT.randomized.json")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("-o", "--output", default="benchmarks/results/cnn_sphere.md")
    args = ap.parse_args()

    model, meta = load_model(args.model)
    rows: dict[str, list] = {"cnn": [], "analytic": [], "randomized": [], "cnn (same fields as randomized)": []}
    per_dir: dict[str, list] = {}
    times = {"cnn": [], "randomized": []}
    cache = Path(args.output).with_suffix(".randomized.json")
    rdir = args.randomized_from or args.test_dirs[0]
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if cached.get("dir") == rdir and cached.get("samples") == args.samples and \
            len(cached.get("rows", [])) >= args.randomized_fields:
        rrows = cached["rows"][:args.randomized_fields]
        times["randomized"] = cached["times"][:args.randomized_fields]
    else:
        rrows = []
        ds = NormalizationDataset(rdir, args.split)
        for k in range(min(args.randomized_fields, len(ds))):
            item = ds[k]
            t = time.perf_counter()
            gr = randomized_normalization(grid_from_fields(item), item["steps"], samples=args.samples, seed=k)
            times["randomized"].append(time.perf_counter() - t)
            rrows.append({"path": item["path"], **sample_metrics(gr, item["gamma"])})
            print(f"randomized {item['path']}: {rrows[-1]}", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"dir": rdir, "samples": args.samples, "rows": rrows,
                                     "times": times["randomized"]}, indent=1))
    rpaths = {r["path"] for r in rrows}
    rows["randomized"] = rrows
    for d in args.test_dirs:
        ds = NormalizationDataset(d, args.split)
        for i in range(len(ds)):
            try:
                item = ds[i]
            except FileNotFoundError:
                print(f"{d}: test sample {i} missing (not generated yet), skipped", flush=True)
                continue
            grid = grid_from_fields(item)
            ref = item["gamma"]
            t = time.perf_counter()
            g = predict_gamma(model, meta, grid)
            times["cnn"].append(time.perf_counter() - t)
            mc = sample_metrics(g, ref)
            rows["cnn"].append(mc)
            per_dir.setdefault(Path(d).name, []).append(mc)
            rows["analytic"].append(sample_metrics(analytic_prior(grid, item["steps"]), ref))
            if item["path"] in rpaths:
                rows["cnn (same fields as randomized)"].append(mc)
            print(f"{Path(d).name}[{i}] cnn eps_max {mc['max']:.3e} mean {mc['mean']:.3e}", flush=True)
    lines = ["| method | fields | ε_Q9999 | ε_max | ε_mean | RMSE | time/field (s) |", "|---|---|---|---|---|---|---|"]
    out = {}
    for name, r in rows.items():
        if not r:
            continue
        a = aggregate_metrics(r)
        out[name] = {**a, "fields": len(r)}
        tm = times.get(name.split(" ")[0] if name != "analytic" else "", [])
        if name == "randomized":
            label = f"randomized N={args.samples}"
        else:
            label = name
        lines.append(f"| {label} | {len(r)} | {a['q9999']:.2e} ± {a['q9999_std']:.1e} | {a['max']:.2e} ± "
                     f"{a['max_std']:.1e} | {a['mean']:.2e} ± {a['mean_std']:.1e} | {a['rmse']:.2e} | "
                     f"{np.mean(tm) if tm and name in ('cnn', 'randomized') else float('nan'):.2f} |")
    lines += ["", "Per test set (CNN):", "", "| test set | fields | ε_Q9999 | ε_max | ε_mean |",
              "|---|---|---|---|---|"]
    for name, r in per_dir.items():
        a = aggregate_metrics(r)
        lines.append(f"| {name} | {len(r)} | {a['q9999']:.2e} | {a['max']:.2e} | {a['mean']:.2e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps({"model": str(args.model), "results": out,
                                                                  "per_dir": {k: aggregate_metrics(v) for k, v in
                                                                              per_dir.items()}}, indent=2))


if __name__ == "__main__":
    main()
