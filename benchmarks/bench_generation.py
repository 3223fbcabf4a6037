"""Data set generation throughput: samples per hour on the 180 x 360 ``sphere`` grid (M = 10), 1 and 2 workers.

Not part of ``make test``. Usage::

    .venv/bin/python benchmarks/bench_generation.py [--samples 6] [--workers 1 2] [--generator study]

For each worker count a :class:`distributed.LocalCluster` (processes, one thread each, as
``diffnorm dataset generate`` starts by default) is started and warmed up (one sample per worker,
so imports and the first factorization are not timed), then ``--samples`` training samples are
generated into a fresh directory. Reported: end-to-end samples/hour of that call (it includes
building the family's geometry and land mask in the client) and the compute rate without that
set-up, the scaling ratio to one worker, the CPU seconds per sample spent in the workers (a
load-independent cost: an idle machine's rate is about ``3600 / (CPU s/sample)`` per core) and the
machine's load average during the run (on a shared machine other processes take cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import dask
from distributed import Client, LocalCluster

from diffnorm.generation import DatasetConfig, _worker_environ, generate_dataset


def _cpu_seconds() -> float:
    """User + system CPU time of this (worker) process."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(workers: int, samples: int, base: dict, root: Path) -> dict:
    # the same worker environment as `diffnorm dataset generate` (thread caps, no MALLOC_TRIM_THRESHOLD_)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        warm = {**base, "seed": 10_000 + workers, "splits": {"train": workers}}
        generate_dataset(root / f"warm{workers}", warm, scheduler=client, progress=False)
        cfg = {**base, "splits": {"train": samples}}
        t0 = time.perf_counter()
        DatasetConfig.from_dict(cfg).build_geometry()
        setup = time.perf_counter() - t0
        cpu0 = client.run(_cpu_seconds)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        generate_dataset(root / f"run{workers}", cfg, scheduler=client, progress=True)
        wall = time.perf_counter() - t0
        cpu = sum(client.run(_cpu_seconds).values()) - sum(cpu0.values())
        load = (load0 + os.getloadavg()[0]) / 2
    return {"workers": workers, "samples": samples, "wall": wall, "setup": setup, "load": load,
            "cpu_per_sample": cpu / samples, "per_hour": samples / wall * 3600,
            "per_hour_compute": samples / max(wall - setup, 1e-9) * 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--generator", default="study")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    base = {"family": "sphere", "family_params": {"res": 1.0, "polar_limit": 70.0}, "generator": args.generator,
            "steps": args.steps, "seed": 0}
    geo, mask = DatasetConfig.from_dict({**base, "splits": {"train": 1}}).build_geometry()
    print(f"sphere grid {mask.shape[0]}x{mask.shape[1]}, {int(mask.sum())} ocean cells, M = {args.steps}, "
          f"generator {args.generator}; {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            r = run(w, args.samples, base, Path(tmp))
            results.append(r)
            print(f"workers={w}: {r['samples']} samples in {r['wall']:.1f} s (geometry set-up {r['setup']:.1f} s) "
                  f"-> {r['per_hour']:.0f} samples/h end-to-end, {r['per_hour_compute']:.0f} samples/h compute; "
                  f"{r['cpu_per_sample']:.1f} CPU s/sample in the workers; load average {r['load']:.2f}",
                  flush=True)
    one = next((r for r in results if r["workers"] == 1), None)
    print("\n| Dask workers | samples | wall time (s) | samples/hour | scaling vs 1 worker | CPU s/sample | "
          "machine load average |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        scale = f"{r['per_hour'] / one['per_hour']:.2f}x" if one else "-"
        print(f"| {r['workers']} | {r['samples']} | {r['wall']:.1f} | {r['per_hour']:.0f} | {scale} | "
              f"{r['cpu_per_sample']:.1f} | {r['load']:.2f} |")


if __name__ == "__main__":
    main()
