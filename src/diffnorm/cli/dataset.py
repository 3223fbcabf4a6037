"""Subcommands ``dataset generate`` and ``dataset info`` (training data sets, :mod:`diffnorm.generation`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser("dataset", help="training data sets: grids with exact normalization labels")
    ds_sub = ds.add_subparsers(dest="dataset_command", metavar="ACTION")

    gen = ds_sub.add_parser(
        "generate", help="generate (or complete) a data set with Dask",
        description="Generate a data set from a YAML configuration and/or options (options override the file). "
                    "Re-running on the same directory computes only missing or corrupt samples.")
    gen.add_argument("--config", help="YAML configuration (keys of diffnorm.generation.DatasetConfig)")
    gen.add_argument("--family", help="grid family: sphere, coast, nemo")
    gen.add_argument("--family-param", action="append", default=[], metavar="KEY=VALUE",
                     help="family parameter, VALUE parsed as YAML (e.g. lat_range=[30,40]); repeatable")
    gen.add_argument("--generator", help="diffusivity generator: constant, isotropic, anisotropic, equatorial, study")
    gen.add_argument("--generator-param", action="append", default=[], metavar="KEY=VALUE",
                     help="generator parameter, VALUE parsed as YAML; repeatable")
    gen.add_argument("--steps", type=int, help="M, even and >= 2 (default 10)")
    gen.add_argument("--seed", type=int, help="data set seed (default 0)")
    gen.add_argument("--train", type=int, help="number of training samples")
    gen.add_argument("--val", type=int, help="number of validation samples")
    gen.add_argument("--test", type=int, help="number of test samples")
    gen.add_argument("--tol", type=float, help="exact method: relative tolerance in gamma^2 (default 1e-12)")
    gen.add_argument("-o", "--output", required=True, help="data set directory")
    gen.add_argument("--scheduler", default=None,
                     help="Dask scheduler address of an existing cluster (tcp://HOST:PORT); 'synchronous' runs "
                          "without Dask, 'threads' a local cluster of threads; default: a local cluster of "
                          "processes")
    gen.add_argument("--workers", type=int, default=None, help="local cluster: number of workers (default: cores)")
    gen.add_argument("--no-progress", action="store_true")
    gen.set_defaults(func=_generate)

    info = ds_sub.add_parser("info", help="summary of a data set directory")
    info.add_argument("directory")
    info.add_argument("--verify", action="store_true", help="open every sample file to check it")
    info.set_defaults(func=_info)
    ds.set_defaults(func=lambda args: (ds.print_help(), 2)[1])


def _key_values(items: list[str], what: str) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def config_from_args(args: argparse.Namespace):
    from ..generation import DatasetConfig

    data: dict = {}
    if args.config:
        data = DatasetConfig.from_yaml(args.config).to_dict()
    if args.family is not None:
        if data.get("family") not in (None, args.family):
            data["family_params"] = {}  # parameters of another family do not carry over
        data["family"] = args.family
    if args.family_param:
        data["family_params"] = {**data.get("family_params", {}), **_key_values(args.family_param, "--family-param")}
    if args.generator is not None:
        if data.get("generator") not in (None, args.generator):
            data["generator_params"] = {}
        data["generator"] = args.generator
    if args.generator_param:
        data["generator_params"] = {**data.get("generator_params", {}),
                                    **_key_values(args.generator_param, "--generator-param")}
    for key in ("steps", "seed", "tol"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    for split in ("train", "val", "test"):
        if getattr(args, split) is not None:
            data.setdefault("splits", {})
            data["splits"] = {**data["splits"], split: getattr(args, split)}
    return DatasetConfig.from_dict(data)


def _generate(args: argparse.Namespace) -> int:
    import time

    from ..generation import generate_dataset, load_manifest

    config = config_from_args(args)
    start = time.perf_counter()
    out = generate_dataset(args.output, config, scheduler=args.scheduler, n_workers=args.workers,
                           progress=not args.no_progress)
    manifest = load_manifest(out)
    counts = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
    print(f"wrote {out}: {config.family} {manifest['shape'][0]}x{manifest['shape'][1]}, {counts} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..generation import dataset_status, load_manifest

    m = load_manifest(args.directory)
    print(f"{args.directory}: {m['format']} (diffnorm {m.get('package_version')}), "
          f"{'complete' if m.get('complete') else 'INCOMPLETE (run generate again)'}")
    print(f"  family    {m['family']} {m['family_params']}  shape {m['shape'][0]}x{m['shape'][1]}  "
          f"periodic_x={m.get('periodic_x')} periodic_y={m.get('periodic_y')}")
    print(f"  generator {m['generator']} {m['generator_params']}")
    print(f"  steps {m['steps']}  seed {m['seed']}  tol {m.get('tol')}")
    status = dataset_status(args.directory, verify=args.verify)
    bad_total = 0
    for split, st in status.items():
        print(f"  {split:5s} {st['present']}/{st['expected']} samples present" + (" (verified)" if args.verify else ""))
        for line in st["bad"][:10]:
            print(f"        {line}")
        bad_total += len(st["bad"])
    return 1 if bad_total else 0
