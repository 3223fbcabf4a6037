"""Time one training step of the CNN (forward, backward, Adam) on random patches, alone, without Lightning.

What a step costs decides how many steps a time-limited run gets (``configs/best.yaml``: 29 minutes). Variants
run interleaved in one process (one step of each in turn), so that a busy machine slows them alike:

- ``--precision 32``: float32; ``bf16``: bf16 autocast, as ``trainer.precision: bf16-mixed``;
- ``--output-layer`` (bf16 only): ``straight`` (the library's: the output's value in float32, its gradient
  through a bf16 copy of the layer), ``float32`` (the layer in float32 both ways, the previous version's) or
  ``bf16`` (in bf16 both ways).

    python benchmarks/bench_train_step.py --filters 16 32 --precision 32 bf16 --output-layer straight float32 bf16
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch
import yaml

from diffnorm.models import build_model

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_LAYERS = ("straight", "float32", "bf16")


def _float32_both_ways(model):
    def out(h):
        with torch.autocast(h.device.type, enabled=False):
            return model.output_layer(h.float())
    return out


def make_variant(kwargs: dict, filters: int, precision: str, output_layer: str, batch: int, patch: int,
                 compile_: bool):
    """``(step function, label)`` of one variant, with its own model, optimizer and compiled graph."""
    torch.manual_seed(0)
    model = build_model("cnn", **{**kwargs, "filters": filters})
    if output_layer == "float32":
        model._output_float32 = _float32_both_ways(model)  # the previous version's layer
    elif output_layer == "bf16":
        model._output_float32 = model.output_layer
    model.to(memory_format=torch.channels_last)
    body = torch.compile(model.body, dynamic=False) if compile_ else model.body
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, kwargs["in_channels"], patch, patch).contiguous(memory_format=torch.channels_last)
    out = patch - 2 * model.margin
    y = torch.randn(batch, 1, out, out)
    mask = (torch.rand(batch, 1, out, out) > 0.3).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            pred = body(x)
            loss = (((pred.float() - y) ** 2) * mask).sum() / mask.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    label = f"{filters} filters, {precision}" + (f", output layer {output_layer}" if precision == "bf16" else "")
    return step, label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "best.yaml"), help="model_kwargs come from here")
    ap.add_argument("--filters", type=int, nargs="+", default=[32])
    ap.add_argument("--precision", nargs="+", choices=("32", "bf16"), default=["bf16"])
    ap.add_argument("--output-layer", nargs="+", choices=OUTPUT_LAYERS, default=list(OUTPUT_LAYERS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=192, help="input patch side (output side + 2 x margin)")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(open(args.config))["model"]
    kwargs = dict(cfg["model_kwargs"], in_channels=len(yaml.safe_load(open(args.config))["data"]["channels"]))
    variants = []
    for filters, precision in itertools.product(args.filters, args.precision):
        for layer in args.output_layer if precision == "bf16" else ["float32"]:
            variants.append(make_variant(kwargs, filters, precision, layer, args.batch, args.patch,
                                         not args.no_compile))
    for step, _ in variants:
        for _ in range(args.warmup):
            step()
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(args.repeats):
        for (step, _), t in zip(variants, times, strict=True):
            t0 = time.perf_counter()
            step()
            t.append(time.perf_counter() - t0)
    print(f"one training step, {args.batch} patches of {args.patch}², {torch.get_num_threads()} threads, "
          f"{'eager' if args.no_compile else 'torch.compile'}, channels-last; {args.repeats} interleaved repeats\n")
    print("| variant | median (ms) | fastest quarter (ms) |\n| --- | ---: | ---: |")
    for (_, label), t in zip(variants, times, strict=True):
        q = statistics.quantiles(t, n=4)[0]
        print(f"| {label} | {statistics.median(t) * 1e3:.1f} | {q * 1e3:.1f} |")


if __name__ == "__main__":
    main()
