"""Fresh training fields computed on the machine that trains: plan them here, generate them there.

Why: a GPU machine (an HPC node, a cloud image) often holds PyTorch, SciPy and xarray but no Dask, NetCDF library
or ``global-land-mask``, and what can be sent to it is limited (tens of MiB: ~100 packed 1° fields). A field is
small to describe — its data set configuration, its seed and its grid — and costs 1.5-5 s to label exactly on one
core. So a *plan* (the configurations of the data sets to draw again, with their seeds shifted to a new draw, and
each distinct grid's coordinates and ocean mask: ~0.1 MB for 52 coastlines) travels, and the machine's own cores
compute the fields in parallel (:func:`diffnorm.generation.compute_sample`, the code that made the data sets) into
a pack in the format of ``benchmarks/pack_fields.py``, which ``benchmarks/train_packed.py`` reads.

Validation and test fields keep their seeds, so they are the same fields as the data sets they come from: the
plan records a checksum of each, and ``generate`` stops with an error naming the field if it computes another one
(a different SciPy giving other γ, a changed generator).

Each computed field is written at once, atomically, under ``OUT.parts/``; a run that is stopped and started again
computes only the missing fields, and the pack is assembled (atomically) when all are there.

Usage:
    python benchmarks/fresh_fields.py plan configs/fields-draw9.yaml --seed-offset 2000 --scale 0.5 \\
        --val-dirs data/tr-sphere-iso -o plan.npz           # here: reads manifests and builds the masks
    python benchmarks/fresh_fields.py generate plan.npz -o fields.npz --workers 16    # there: no Dask/NetCDF
    python benchmarks/fresh_fields.py info plan.npz                                    # what a plan holds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pack_fields.py, beside this file
from pack_fields import add_field, save_npz_atomic, write_pack  # noqa: E402

PLAN_FORMAT = "diffnorm-fresh-plan/1"
CONFIG_KEYS = ("family", "family_params", "generator", "generator_params", "steps", "seed", "tol")
GEOMETRY_CLASSES = ("LatLonGeometry", "SphereGeometry")
CHECK_RTOL = 1e-8  # exact γ agrees with brute force to 1e-10: a larger difference in Σγ is another field


class PlanError(ValueError):
    """A plan that cannot be made or used (a missing manifest, a grid that cannot travel, a corrupt file)."""


# -- plan (here: manifests, land masks) ---------------------------------------------------------------------
def _sources(paths: list[str]) -> tuple[list[str], list[str]]:
    """Training directories (and the validation directories of a YAML config) from configs and folders."""
    import yaml

    train, val = [], []
    for p in paths:
        if p.endswith((".yaml", ".yml")):
            data = (yaml.safe_load(Path(p).read_text()) or {}).get("data", {})
            if not data.get("data_dirs"):
                raise PlanError(f"{p} has no data.data_dirs")
            train += list(data["data_dirs"])
            val += list(data.get("val_dirs") or [])
        else:
            train.append(p)
    return train, val


def _manifest_config(directory: str) -> tuple[dict, dict]:
    from diffnorm.generation import DatasetError, load_manifest

    try:
        manifest = load_manifest(directory)
    except (FileNotFoundError, DatasetError) as exc:
        raise PlanError(f"{directory}: {exc}") from exc
    return {k: manifest[k] for k in CONFIG_KEYS}, manifest


def _geometry_key(family: str, params: dict) -> str:
    return hashlib.sha1(json.dumps([family, params], sort_keys=True).encode()).hexdigest()[:12]


def _field_check(directory: str, manifest: dict, split: str, index: int) -> float:
    """Σγ over the ocean of a stored field: the checksum ``generate`` compares its own field with."""
    import xarray as xr

    entry = next(s for s in manifest["samples"] if s["split"] == split and s["index"] == index)
    with xr.open_dataset(Path(directory) / entry["file"]) as ds:
        return float(np.nansum(ds["gamma"].values))


def make_plan(sources: list[str], out: str | os.PathLike, seed_offset: int, scale: float = 1.0,
              val_dirs: list[str] | None = None, test_dirs: list[str] | None = None) -> dict:
    """Write a plan: the training data sets of ``sources`` drawn again (seeds + ``seed_offset``, each training split
    scaled by ``scale``, rounded up), the validation split of ``val_dirs`` (default: the configs' ``val_dirs``) and
    the test split of ``test_dirs`` as they are. Returns the plan's JSON part."""
    from diffnorm.generation import DatasetConfig

    if not scale > 0:
        raise PlanError(f"scale must be > 0, got {scale}")
    train, config_val = _sources(sources)
    val_dirs = list(val_dirs) if val_dirs is not None else config_val
    if not train:
        raise PlanError("no training data set given")
    if not val_dirs:
        raise PlanError("no validation data set: give --val-dirs (training reports its metrics on them)")
    arrays: dict[str, np.ndarray] = {}
    geometries: dict[str, dict] = {}
    entries = []
    for role, dirs in (("train", train), ("val", val_dirs), ("test", test_dirs or [])):
        for d in dirs:
            config, manifest = _manifest_config(d)
            n = int(manifest["splits"].get(role, 0))
            if n == 0:
                raise PlanError(f"{d} has no {role} samples")
            if role == "train":
                config["seed"] = int(config["seed"]) + int(seed_offset)
                n = math.ceil(n * scale)
            key = _geometry_key(config["family"], config["family_params"])
            if key not in geometries:
                geometry, mask = DatasetConfig.from_dict({**config, "splits": {"train": 1}}).build_geometry()
                name = type(geometry).__name__
                if name not in GEOMETRY_CLASSES:
                    raise PlanError(f"{d}: family {config['family']!r} ({name}) cannot travel in a plan; "
                                    f"only {', '.join(GEOMETRY_CLASSES)} grids (families sphere and coast) can")
                geometries[key] = {"class": name, "res": float(geometry.res),
                                   "periodic_x": bool(geometry.periodic_x)}
                arrays[f"{key}_lat"], arrays[f"{key}_lon"] = geometry.lat, geometry.lon
                arrays[f"{key}_mask"] = np.asarray(mask, dtype=bool)
            checks = [_field_check(d, manifest, role, i) for i in range(n)] if role != "train" else None
            entries.append({"role": role, "dir": str(d), "config": config, "count": n, "geometry": key,
                            "checks": checks})
    plan = {"format": PLAN_FORMAT, "seed_offset": int(seed_offset), "scale": float(scale),
            "geometries": geometries, "entries": entries}
    arrays["plan"] = np.frombuffer(json.dumps(plan).encode(), np.uint8)
    save_npz_atomic(out, arrays, compress=True)
    return plan


def load_plan(path: str | os.PathLike) -> tuple[dict, dict[str, tuple]]:
    """The plan's JSON part and ``{geometry key: (geometry, mask)}`` (no pickle: plain arrays and JSON)."""
    from diffnorm.families import LatLonGeometry, SphereGeometry

    classes = {"LatLonGeometry": LatLonGeometry, "SphereGeometry": SphereGeometry}
    try:
        with np.load(path, allow_pickle=False) as z:
            plan = json.loads(bytes(z["plan"]).decode())
            if plan.get("format") != PLAN_FORMAT:
                raise PlanError(f"{path} is not a {PLAN_FORMAT} file (format {plan.get('format')!r})")
            grids = {}
            for key, g in plan["geometries"].items():
                geometry = classes[g["class"]](z[f"{key}_lat"], z[f"{key}_lon"], g["res"], g["periodic_x"])
                grids[key] = (geometry, z[f"{key}_mask"].astype(bool))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        if isinstance(exc, PlanError):
            raise
        raise PlanError(f"cannot read the plan {path}: {type(exc).__name__}: {exc}") from exc
    return plan, grids


def tasks(plan: dict) -> list[tuple[int, int]]:
    """``(entry number, sample index)`` of every field of a plan."""
    return [(e, i) for e, entry in enumerate(plan["entries"]) for i in range(entry["count"])]


# -- generate (there: SciPy, xarray, the machine's cores) ---------------------------------------------------
_PLAN: tuple | None = None  # each worker process's plan, loaded once


def _init_worker(plan_path: str) -> None:
    global _PLAN
    try:  # one core per process: the exact method's dense fronts would otherwise oversubscribe the machine
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    _PLAN = load_plan(plan_path)


def _part_path(parts: Path, e: int, i: int) -> Path:
    return parts / f"e{e:04d}_s{i:06d}.npz"


def compute_part(task: tuple[int, int], parts: str) -> tuple[int, int, float, str | None]:
    """Compute one field of the plan and write it atomically under ``parts``. Returns ``(e, i, seconds, error)``:
    ``error`` names a validation/test field that differs from the one stored where it came from."""
    from diffnorm.generation import DatasetConfig, compute_sample

    plan, grids = _PLAN
    e, i = task
    entry = plan["entries"][e]
    start = time.perf_counter()
    split = entry["role"]
    config = DatasetConfig.from_dict({**entry["config"], "splits": {split: entry["count"]}})
    geometry, mask = grids[entry["geometry"]]
    ds = compute_sample(config, split, i, geometry, mask)
    gamma = ds["gamma"].values
    error = None
    if entry["checks"] is not None:
        want, got = entry["checks"][i], float(np.nansum(gamma))
        if abs(got - want) > CHECK_RTOL * abs(want):
            error = (f"{entry['dir']} {split} field {i}: Σγ {got!r} computed, {want!r} stored "
                     f"(relative {abs(got - want) / abs(want):.1e}): not the same field")
    save_npz_atomic(_part_path(Path(parts), e, i), {
        "mask": ds["mask"].values.astype(np.int8), "area": ds["area"].values,
        **{n: ds[n].values.astype(np.float32) for n in ("diff_x", "diff_y")}, "gamma": gamma.astype(np.float32),
        "meta": np.frombuffer(json.dumps({"steps": int(config.steps), "seed": int(ds.attrs["seed"]),
                                          "periodic_x": bool(ds.attrs.get("periodic_x", geometry.periodic_x)),
                                          "periodic_y": bool(ds.attrs.get("periodic_y", False))}).encode(), np.uint8)},
        compress=False)
    return e, i, time.perf_counter() - start, error


def generate(plan_path: str | os.PathLike, out: str | os.PathLike, workers: int = 1, compress: bool = False,
             progress: bool = True) -> dict:
    """Compute every field of a plan (``workers`` processes) and write the pack ``out``. Returns its index."""
    plan, _ = load_plan(plan_path)
    if workers < 1:
        raise PlanError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    digest = hashlib.sha1(Path(plan_path).read_bytes()).hexdigest()
    done = _pack_index(out)
    if done is not None and done.get("plan_sha1") == digest:
        if progress:
            print(f"{out} already holds the fields of this plan", flush=True)
        return done
    parts = Path(f"{out}.parts")
    parts.mkdir(parents=True, exist_ok=True)
    for leftover in parts.glob("*.tmp*"):
        leftover.unlink()
    todo = [t for t in tasks(plan) if not _part_path(parts, *t).exists()]
    total = len(tasks(plan))
    errors: list[str] = []
    seconds: list[float] = []
    bar = _bar(total, total - len(todo), progress)
    start = time.perf_counter()
    if todo:
        if workers == 1:
            _init_worker(str(plan_path))
            for t in todo:
                _record(compute_part(t, str(parts)), seconds, errors, bar)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn, not fork: the parent may hold threads (BLAS, tqdm); a worker that dies ends the run with
            # BrokenProcessPool instead of being replaced in silence; finished fields stay in the parts
            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                     initializer=_init_worker, initargs=(str(plan_path),)) as pool:
                futures = [pool.submit(compute_part, t, str(parts)) for t in todo]
                try:
                    for f in as_completed(futures):
                        _record(f.result(), seconds, errors, bar)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    if errors:
        raise PlanError(f"{len(errors)} validation/test field(s) differ from the stored ones "
                        f"(computed fields kept in {parts}): " + "; ".join(errors[:3]))
    index = _assemble(plan, parts, out, compress, digest)
    shutil.rmtree(parts)
    wall = time.perf_counter() - start
    if progress:
        per = f", {np.mean(seconds):.2f} s a field in a worker" if seconds else ""
        print(f"{len(todo)} fields computed ({total - len(todo)} already there) in {wall:.0f} s with {workers} "
              f"worker(s){per} -> {out} ({out.stat().st_size / 2**20:.0f} MiB)", flush=True)
    return index


def _record(result: tuple, seconds: list[float], errors: list[str], bar) -> None:
    seconds.append(result[2])
    if result[3]:
        errors.append(result[3])
    bar(1)


def _bar(total: int, done: int, enabled: bool):
    """A progress callback: tqdm where installed, a line every tenth otherwise."""
    if not enabled:
        return lambda n: None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done, desc="fields", unit="field")
        return bar.update
    except ImportError:
        state = {"done": done}

        def update(n: int) -> None:
            state["done"] += n
            if state["done"] % max(1, total // 10) == 0 or state["done"] == total:
                print(f"fields {state['done']}/{total}", flush=True)

        return update


def _pack_index(path: Path) -> dict | None:
    """The index of an existing pack, None where there is none or it cannot be read (then it is made again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(bytes(z["index"]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _assemble(plan: dict, parts: Path, out: Path, compress: bool, digest: str) -> dict:
    """The pack of ``benchmarks/pack_fields.py`` from the part files (through its ``add_field``)."""
    arrays: dict[str, np.ndarray] = {}
    index: dict = {"train": [], "val": [], "test": [], "plan_sha1": digest}
    grids: dict[str, str] = {}
    for e, i in tasks(plan):
        entry = plan["entries"][e]
        try:
            with np.load(_part_path(parts, e, i), allow_pickle=False) as z:
                part = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise PlanError(f"corrupt part file {_part_path(parts, e, i)} ({exc}): delete it and run again") from exc
        meta = json.loads(bytes(part.pop("meta")).decode())
        split = entry["role"]
        path = f"{entry['dir']}@seed{entry['config']['seed']}/{split}/{i:06d}"
        add_field(arrays, index, grids, split, {**part, "steps": meta["steps"], "periodic_x": meta["periodic_x"],
                                                "periodic_y": meta["periodic_y"], "path": path}, seed=meta["seed"])
    write_pack(arrays, index, out, compress)
    return index


def describe(plan: dict) -> str:
    lines = [f"{PLAN_FORMAT}: seed offset {plan['seed_offset']}, scale {plan['scale']}, "
             f"{len(plan['geometries'])} distinct grid(s)"]
    for role in ("train", "val", "test"):
        es = [e for e in plan["entries"] if e["role"] == role]
        if es:
            lines.append(f"  {role}: {sum(e['count'] for e in es)} fields from {len(es)} data set(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("plan", help="describe a new draw of training fields (here, with the data sets at hand)")
    a.add_argument("sources", nargs="+", help="YAML configs (their data.data_dirs, val_dirs) or data set folders")
    a.add_argument("--seed-offset", type=int, required=True,
                   help="added to each training data set's seed: a new draw (sphere-1deg's draws used 1000 ... 8000)")
    a.add_argument("--scale", type=float, default=1.0, help="each training split's size times this, rounded up")
    a.add_argument("--val-dirs", nargs="+", default=None, help="validation split (default: the configs' val_dirs)")
    a.add_argument("--test-dirs", nargs="+", default=None, help="test split, as stored")
    a.add_argument("-o", "--output", required=True)
    g = sub.add_parser("generate", help="compute a plan's fields into a pack for benchmarks/train_packed.py")
    g.add_argument("plan")
    g.add_argument("-o", "--output", required=True)
    g.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else (os.cpu_count() or 1), help="processes (default: every core)")
    g.add_argument("--compress", action="store_true", help="a compressed pack (to send it on; slower to write)")
    i = sub.add_parser("info", help="what a plan holds")
    i.add_argument("plan")
    args = p.parse_args(argv)
    try:
        if args.command == "plan":
            plan = make_plan(args.sources, args.output, args.seed_offset, args.scale, args.val_dirs, args.test_dirs)
            print(describe(plan) + f"\n-> {args.output} ({Path(args.output).stat().st_size / 2**10:.0f} KiB)")
        elif args.command == "generate":
            generate(args.plan, args.output, args.workers, args.compress)
        else:
            print(describe(load_plan(args.plan)[0]))
    except PlanError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
