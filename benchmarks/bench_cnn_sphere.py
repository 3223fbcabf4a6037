"""Test metrics of a trained CNN (default: the shipped sphere-1deg) vs randomized N=1e4, the images prior and analytic.

    python benchmarks/bench_cnn_sphere.py --model sphere-1deg --test-dirs data/te-sphere-* \
        --randomized-fields 3 \
        --randomized-from data/te-sphere-study data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso \
        -o benchmarks/results/cnn_sphere.md

SPEC §3 metrics per field against the exact γ stored in the data sets; means (± std) over fields.
Rows: the CNN (with the model's test-time augmentation, and without it: "cnn, no TTA"); its physics prior
alone (``images``: :func:`diffnorm.normalization.image_normalization`, and
"images prior + exact small": what the network corrects, with the exact γ on ocean components of at most
``exact_small`` cells, :meth:`TargetTransform.prior`); the analytic formula (SPEC §2); randomized N=1e4.
Randomized N=1e4 costs about 40 s per 180x360 field, so it runs on the first ``--randomized-fields`` fields of
each ``--randomized-from`` data set only (its errors depend on N, hardly on the field: relative error of v ~ sqrt(2/N)).
Its metrics are cached in OUTPUT.randomized.json with a hash of each field's inputs (mask, area, diff_x,
diff_y, M): a field whose inputs changed is recomputed. OUTPUT.json holds the means and, under ``fields``, each
field's CNN metrics (with and without TTA), which ``benchmarks/compare_stages.py`` pairs field by field.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from _cli import model_parser  # benchmarks/_cli.py: the options these scripts share

from diffnorm.datasets import NormalizationDataset
from diffnorm.metrics import aggregate_metrics, sample_metrics
from diffnorm.models.inference import PRECISIONS
from diffnorm.normalization import image_normalization, randomized_normalization
from diffnorm.pretrained import load_model, predict_gamma
from diffnorm.transforms.augmentation import TTA_CHOICES, tta_transforms
from diffnorm.transforms.inputs import grid_from_fields
from diffnorm.transforms.targets import TargetTransform, analytic_prior


def input_hash(item: dict) -> str:
    """sha1 of what randomized_normalization's result depends on (besides N and the seed)."""
    h = hashlib.sha1()
    for k in ("mask", "area", "diff_x", "diff_y"):
        h.update(np.ascontiguousarray(item[k], np.float64).tobytes())
    h.update(f"{int(item['steps'])} {bool(item.get('periodic_x'))} {bool(item.get('periodic_y'))}".encode())
    return h.hexdigest()


def save_cache(cache: Path, samples: int, known: dict) -> None:
    """Randomized metrics per field input hash, written atomically."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"samples": samples, "fields": known}, indent=1))
    tmp.replace(cache)


def main() -> None:
    ap = model_parser(__doc__, output="benchmarks/results/cnn_sphere.md")
    ap.add_argument("--randomized-fields", type=int, default=5)
    ap.add_argument("--randomized-from", nargs="+", help="data sets whose first fields get the randomized method "
                    "(default: the first test directory); results are cached in OUTPUT.randomized.json")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--tta", default="model", choices=TTA_CHOICES,
                    help="test-time augmentation of the CNN row (default: the model's own setting); with flips, a "
                         "row 'cnn, no TTA' gives the plain network beside it")
    ap.add_argument("--precision", choices=PRECISIONS, default="32",
                    help="the network's arithmetic (bf16: hidden layers in bfloat16, fast on CPUs with AMX)")
    args = ap.parse_args()

    model, meta = load_model(args.model)
    tt = TargetTransform.from_dict(meta.get("target_transform") or {"kind": meta["target"]})
    with_tta = len(tta_transforms(args.tta, meta.get("tta"))) > 1
    rows: dict[str, list] = {"cnn": [], "cnn, no TTA": [], "images": [], "images prior + exact small": [],
                             "analytic": [], "randomized": [], "cnn (same fields as randomized)": []}
    per_dir: dict[str, dict[str, list]] = {}
    per_field: list[dict] = []  # each test field's metrics by row: paired comparisons (benchmarks/compare_stages.py)
    times: dict[str, list] = {"cnn": [], "cnn, no TTA": [], "images": [], "images prior + exact small": [],
                              "randomized": []}
    cache = Path(args.output).with_suffix(".randomized.json")
    rdirs = args.randomized_from or [args.test_dirs[0]]
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if cached.get("samples") != args.samples:
        cached = {}
    known = dict(cached.get("fields", {}))  # input sha1 -> metrics and time of that field
    for r, t in zip(cached.get("rows", []), cached.get("times", []), strict=False):  # the earlier format
        known.setdefault(r["input_sha1"], {**r, "time_s": t})
    rrows, rtimes = [], []
    for rdir in rdirs:
        ds = NormalizationDataset(rdir, args.split)
        for k in range(min(args.randomized_fields, len(ds))):
            item = ds[k]
            key = input_hash(item)
            if key not in known:
                t = time.perf_counter()
                gr = randomized_normalization(grid_from_fields(item), item["steps"], samples=args.samples, seed=k)
                known[key] = {"path": item["path"], "input_sha1": key, **sample_metrics(gr, item["gamma"]),
                              "time_s": time.perf_counter() - t}
                print(f"randomized {item['path']} ({known[key]['time_s']:.0f} s): {known[key]}", flush=True)
                save_cache(cache, args.samples, known)  # after every field: a long run can resume
            row = {k2: v for k2, v in known[key].items() if k2 != "time_s"}
            rrows.append({**row, "path": item["path"]})
            rtimes.append(known[key]["time_s"])
    times["randomized"] = rtimes
    if rrows and "fields" not in cached:  # an earlier format read: store it in the new one
        save_cache(cache, args.samples, known)
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
            g = predict_gamma(model, meta, grid, tta=args.tta, precision=args.precision)
            times["cnn"].append(time.perf_counter() - t)
            mc = sample_metrics(g, ref)
            rows["cnn"].append(mc)
            if with_tta:
                t = time.perf_counter()
                mn = sample_metrics(predict_gamma(model, meta, grid, tta="none", precision=args.precision), ref)
                times["cnn, no TTA"].append(time.perf_counter() - t)
                rows["cnn, no TTA"].append(mn)
                per_dir.setdefault(Path(d).name, {}).setdefault("cnn, no TTA", []).append(mn)
            t = time.perf_counter()
            gi = image_normalization(grid, item["steps"])
            times["images"].append(time.perf_counter() - t)
            mi = sample_metrics(gi, ref)
            rows["images"].append(mi)
            t = time.perf_counter()
            gp = tt.prior(grid, item["steps"])
            times["images prior + exact small"].append(time.perf_counter() - t)
            mp = sample_metrics(np.where(grid.mask, gp, np.nan), ref)
            rows["images prior + exact small"].append(mp)
            for name, mm in (("cnn", mc), ("images", mi), ("images prior + exact small", mp)):
                per_dir.setdefault(Path(d).name, {}).setdefault(name, []).append(mm)
            per_field.append({"set": Path(d).name, "index": i, "path": str(item["path"]), "cnn": mc,
                              **({"cnn, no TTA": mn} if with_tta else {})})
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
        tm = times.get(name, [])
        label = f"randomized N={args.samples}" if name == "randomized" else name
        lines.append(f"| {label} | {len(r)} | {a['q9999']:.2e} ± {a['q9999_std']:.1e} | {a['max']:.2e} ± "
                     f"{a['max_std']:.1e} | {a['mean']:.2e} ± {a['mean_std']:.1e} | {a['rmse']:.2e} | "
                     f"{np.median(tm) if tm else float('nan'):.3g} |")
    lines += ["", "time/field: median over fields (the CNN's includes the images prior and input features).", "",
              "Per test set (mean over fields):", "",
              "| test set | fields | method | ε_Q9999 | ε_max | ε_mean | RMSE |", "|---|---|---|---|---|---|---|"]
    for dname, by in per_dir.items():
        for name, r in by.items():
            a = aggregate_metrics(r)
            lines.append(f"| {dname} | {len(r)} | {name} | {a['q9999']:.2e} | {a['max']:.2e} | {a['mean']:.2e} | "
                         f"{a['rmse']:.2e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps({"model": str(args.model), "results": out,
                                                                  "per_dir": {k: {n: aggregate_metrics(r) for n, r
                                                                                  in v.items()}
                                                                              for k, v in per_dir.items()},
                                                                  "fields": per_field},
                                                                 indent=2))


if __name__ == "__main__":
    main()
