"""Subcommands for trained models: ``evaluate``, ``compare``, ``predict``, ``export``, ``average``, ``plot``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# = diffnorm.transforms.augmentation.TTA_CHOICES, spelled out: importing it costs 0.4 s at every start-up
TTA_CHOICES = ("model", "none", "flips")
# = diffnorm.models.inference.PRECISIONS, spelled out for the same reason (it imports torch)
PRECISION_CHOICES = ("32", "bf16")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or auto")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="run the network with PyTorch (default) or onnxruntime (CPU; exported and checked to 1e-5)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network (default: PyTorch's choice); on a busy shared machine 1 thread "
                        "can be several times faster than oversubscribed cores")
    p.add_argument("--tta", choices=TTA_CHOICES, default="model",
                   help="test-time augmentation: average the network over the grid's flips (x, y, 180°; 4x the "
                        "network's time, smaller errors); 'model' (default) does what the model's meta data says "
                        "(sphere-1deg: flips, sphere-1deg-fast: none)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="32",
                   help="the network's arithmetic: float32 (default) or bf16 (hidden layers in bfloat16: "
                        "sphere-1deg predicts 1.6-1.9x faster on CPUs with AMX/AVX512-BF16, with about 2 %% larger "
                        "ε_mean; slower elsewhere)")
    p.add_argument("--exact-small", type=int, default=None, metavar="N",
                   help="compute γ exactly on ocean components of at most N cells (lakes, isolated cells) instead "
                        "of by the network; 0: the network everywhere; default: the model's own (sphere-1deg: "
                        "300, sphere-1deg-fast: 100)")


def _with_threads(fn):
    """Run a command with ``--threads`` CPU threads, restoring the previous count afterwards."""

    def run(args: argparse.Namespace) -> int:
        if not getattr(args, "threads", None):
            return fn(args)
        if args.threads < 1:
            raise ValueError("--threads must be >= 1")
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            return fn(args)
        finally:
            torch.set_num_threads(before)

    return run


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="SPEC §3 metrics of a model on a data set split, figures and a report")
    ev.add_argument("model", help="checkpoint path or shipped model name (e.g. sphere-1deg); or a method "
                                  "of compare (randomized:N, analytic) to evaluate it the same way")
    ev.add_argument("dataset", help="data set directory")
    ev.add_argument("--split", default="test")
    ev.add_argument("--limit", type=int, default=None, help="only the first N fields")
    ev.add_argument("--distance", choices=("manhattan", "euclidean"), default="manhattan",
                    help="distance to the coast used for the error-vs-distance figure")
    ev.add_argument("--force", action="store_true", help="predict even for inputs far outside the training range")
    ev.add_argument("-v", "--verbose", action="store_true", help="print each field's errors as it goes")
    ev.add_argument("-o", "--output", required=True, help="output directory (report.md, CSVs, PNGs)")
    _device_arg(ev)
    ev.set_defaults(func=_with_threads(_evaluate))

    cmp_ = sub.add_parser("compare", help="every method on the same fields: errors and wall time per field")
    cmp_.add_argument("dataset")
    cmp_.add_argument("--methods", nargs="+", required=True,
                      help="cnn:MODEL, randomized:N[:SEED], analytic, exact")
    cmp_.add_argument("--split", default="test")
    cmp_.add_argument("--limit", type=int, default=None, help="only the first N fields")
    cmp_.add_argument("--force", action="store_true")
    cmp_.add_argument("-o", "--output", action="append", default=[],
                      help="table file: .csv or .md (repeatable); the Markdown table is printed either way")
    _device_arg(cmp_)
    cmp_.set_defaults(func=_with_threads(_compare))

    pr = sub.add_parser("predict", help="γ of new grid files with a trained network (SPEC §4 output)")
    pr.add_argument("model", help="checkpoint path or shipped model name (sphere-1deg, sphere-1deg-fast)")
    pr.add_argument("grids", nargs="+", help="SPEC §4 grid files")
    pr.add_argument("--steps", type=int, default=None,
                    help="M the diffusivities are for; must match the model (default: the grid's 'steps' "
                         "attribute, else the model's M)")
    pr.add_argument("--batch-size", type=int, default=8)
    pr.add_argument("--force", action="store_true", help="predict even for inputs far outside the training range")
    pr.add_argument("-o", "--output", required=True, help="output file (one input) or directory (several)")
    _device_arg(pr)
    pr.set_defaults(func=_with_threads(_predict))

    ex = sub.add_parser("export", help="export a network to ONNX or TorchScript (meta data in FILE.json)")
    ex.add_argument("model", help="checkpoint path or shipped model name")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    ex.add_argument("--opset", type=int, default=17)
    ex.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    ex.add_argument("--tta", choices=TTA_CHOICES, default="model",
                    help="test-time augmentation in the graph: the model's own setting (default; sphere-1deg: "
                         "flips), none (the network alone) or flips (the four flips averaged)")
    ex.add_argument("-o", "--output", required=True)
    ex.set_defaults(func=_export)

    av = sub.add_parser("average", help="average the weights of several trained CNNs of one architecture (the "
                                        "stages of a warm-restart schedule) into one slim model file")
    av.add_argument("models", nargs="+", help="checkpoint paths or shipped model names (at least two)")
    av.add_argument("--reference", type=int, default=-1,
                    help="index of the model whose input/target standardizations and meta data the average "
                         "keeps (default: the last)")
    av.add_argument("-o", "--output", required=True, help="the averaged model (.pt; its meta data in .json)")
    av.set_defaults(func=_average)

    pl = sub.add_parser("plot", help="maps of γ and ε, learning curves")
    pl_sub = pl.add_subparsers(dest="plot_command", metavar="KIND")
    g = pl_sub.add_parser("gamma", help="map of γ from a normalization file")
    g.add_argument("file", help="file with a 'gamma' variable (or a data set sample)")
    g.add_argument("--log", action="store_true")
    g.add_argument("-o", "--output", required=True, help="PNG file")
    g.set_defaults(func=_plot_gamma)
    e = pl_sub.add_parser("error", help="map of ε = (γ̂² − γ²)/γ² of an estimate against a reference")
    e.add_argument("estimate")
    e.add_argument("reference")
    e.add_argument("--abs", action="store_true", help="|ε| on a log scale")
    e.add_argument("-o", "--output", required=True, help="PNG file")
    e.set_defaults(func=_plot_error)
    c = pl_sub.add_parser("curves", help="learning curves from Lightning CSV logs (metrics.csv or its directory); "
                          "several logs are consecutive stages (warm restarts), joined end to end, or with --runs "
                          "separate runs drawn over each other")
    c.add_argument("log", nargs="+")
    c.add_argument("--title", default="learning curves")
    c.add_argument("--reference", nargs="+", default=None, metavar="NAME=VALUE",
                   help="horizontal lines in the metrics panel, e.g. 'randomized N=1e4 ε_max=0.059'")
    c.add_argument("--keys", nargs="+", default=None, help="columns to plot (default: all metrics)")
    c.add_argument("--x", default=None, help="step (default) or epoch")
    c.add_argument("--runs", nargs="+", default=None, metavar="NAME",
                   help="one name a log: the logs are separate runs, overlaid from step 0 (not joined)")
    c.add_argument("-o", "--output", required=True, help="PNG file")
    c.set_defaults(func=_plot_curves)
    pl.set_defaults(func=lambda args: (pl.print_help(), 2)[1])


def _evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_streaming, iter_split, parse_method, write_report

    kind = args.model.split(":", 1)[0]
    spec = args.model if kind in ("randomized", "analytic", "exact", "cnn") else f"cnn:{args.model}"
    estimator = parse_method(spec, device=args.device, force=args.force, backend=args.backend, tta=args.tta,
                             precision=args.precision, exact_small=args.exact_small)[1]
    steps = iter_split(args.dataset, args.split, args.limit)[0]
    ev = evaluate_streaming({"model": estimator}, args.dataset, args.split, args.limit, args.distance,
                            log=(lambda s: print(s, file=sys.stderr)) if args.verbose else None)["model"]
    source = f"Data set `{args.dataset}`, split `{args.split}`, M = {steps}."
    predictor = getattr(estimator, "predictor", None)
    if predictor is not None:
        meta = predictor.meta
        n_params = sum(p.numel() for p in predictor.model.parameters())
        source += (f" Model: {meta.get('model', type(predictor.model).__name__)}, {n_params} parameters, channels "
                   f"{', '.join(predictor.channels)}, target {meta.get('target', '?')}, trained for M = "
                   f"{meta.get('steps', '?')} on fields of shape {meta.get('shape', '?')}; backend {args.backend}.")
    report = write_report(ev, args.output, title=f"Evaluation of {args.model}", source=source)
    s = ev.summary
    print(f"{len(ev.per_field)} fields: eps_Q9999 {s['q9999']:.3e} ± {s['q9999_std']:.1e}  eps_max {s['max']:.3e} ± "
          f"{s['max_std']:.1e}  eps_mean {s['mean']:.3e} ± {s['mean_std']:.1e}  ({s['time_s']:.4f} s/field)")
    print(f"report: {report}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..evaluation import compare_markdown, compare_methods, write_table

    table = compare_methods(args.methods, args.dataset, args.split, args.limit, device=args.device,
                            force=args.force, log=lambda s: print(s, file=sys.stderr), backend=args.backend,
                            tta=args.tta, precision=args.precision, exact_small=args.exact_small)
    print(compare_markdown(table))
    for out in args.output:
        print(f"wrote {write_table(table, out)}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..prediction import Predictor, predict_files

    predictor = Predictor.load(args.model, device=args.device, backend=args.backend, tta=args.tta,
                               precision=args.precision, exact_small=args.exact_small)
    predict_files(predictor, args.grids, args.output, steps=args.steps, batch_size=args.batch_size,
                  force=args.force, log=print)
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..prediction import load_model

    model, meta = load_model(args.model)
    report = export_model(model, meta, args.output, args.format, opset=args.opset, verify=not args.no_verify,
                          tta=args.tta)
    msg = f"wrote {report['path']} ({args.format}) and {report['path']}.json"
    if len(report["tta"]) > 1:
        msg += f", the flips {', '.join(report['tta'])} averaged in the graph"
    if "max_abs_diff" in report:
        msg += f"; max |exported − PyTorch| = {report['max_abs_diff']:.2e}"
    print(msg)
    return 0


def _average(args: argparse.Namespace) -> int:
    from ..pretrained import average_models, save_model

    if len(args.models) < 2:
        raise ValueError(f"average needs at least two models, got {len(args.models)}")
    if not -len(args.models) <= args.reference < len(args.models):
        raise ValueError(f"--reference {args.reference} is not an index of the {len(args.models)} models")
    model, meta = average_models(args.models, reference=args.reference)
    out = save_model(model, meta, args.output)
    print(f"wrote {out} and {out.with_suffix('.json')}: the mean of {len(args.models)} models' weights, in the "
          f"standardizations of {args.models[args.reference]}")
    return 0


def _plot_gamma(args: argparse.Namespace) -> int:
    import xarray as xr

    from ..grid import open_dataset_checked
    from ..plots import plot_gamma

    with open_dataset_checked(args.file) as ds:
        if "gamma" not in ds.variables:
            raise ValueError(f"{args.file} has no variable 'gamma'")
        ds = ds.load()
    gamma = ds["gamma"].values
    if "mask" in ds.variables:
        gamma = xr.where(ds["mask"] > 0, ds["gamma"], float("nan")).values
    lat = ds["lat"].values if "lat" in ds.variables else None
    lon = ds["lon"].values if "lon" in ds.variables else None
    print(f"wrote {plot_gamma(gamma, args.output, lat=lat, lon=lon, log=args.log, title=f'γ, {Path(args.file).name}')}")
    return 0


def _plot_error(args: argparse.Namespace) -> int:
    from ..io import read_gamma_pair
    from ..plots import plot_error_map

    est, ref = read_gamma_pair(args.estimate, args.reference)
    title = f"{'|ε|' if args.abs else 'ε'}: {Path(args.estimate).name} vs {Path(args.reference).name}"
    print(f"wrote {plot_error_map(est, ref, None, args.output, title=title, absolute=args.abs)}")
    return 0


def _plot_curves(args: argparse.Namespace) -> int:
    from ..plots import plot_learning_curves

    reference = {}
    for item in args.reference or []:
        name, _, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not name or number is None:
            raise ValueError(f"--reference {item!r}: expected NAME=VALUE with a number after the last '='")
        reference[name] = number
    out = plot_learning_curves(args.log, args.output, keys=args.keys, x=args.x, title=args.title, reference=reference,
                               runs=args.runs)
    print(f"wrote {out}")
    return 0
