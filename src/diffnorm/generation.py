"""Training data sets: grids of a family with random diffusivities and their exact γ, in parallel with Dask.

A data set is a directory (format ``diffnorm-dataset/1``, README: "generation and format")::

    DATASET/
      manifest.json
      train/sample_000000.nc ...
      val/sample_000000.nc ...
      test/sample_000000.nc ...

Each sample file holds the SPEC §4 grid variables plus ``gamma`` (exact, NaN on land) and its
metadata. Every sample has its own seed, derived from ``(dataset seed, split, index)`` with
:class:`numpy.random.SeedSequence`, so a sample's content depends neither on the number of
workers nor on the order in which samples are computed, and growing a split keeps the samples
already there.

Samples are written atomically (temporary name, then :func:`os.replace`). A run that is started
again over an existing directory validates what is there, deletes temporary leftovers and
corrupt files, and computes only the missing samples.

Dask is imported only where a cluster is started: :func:`compute_sample` runs on machines without it (a GPU
image holding PyTorch, SciPy and xarray; ``benchmarks/fresh_fields.py``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "diffnorm-dataset/1"
SPLITS = ("train", "val", "test")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}  # enters the per-sample seed: never change
GENERATION_FAMILIES = ("sphere", "coast", "nemo")
FAMILY_PARAMS = {
    "sphere": {"required": (), "optional": ("res", "polar_limit", "subsamples")},
    "coast": {"required": ("lat_range", "lon_range", "res"), "optional": ()},
    "nemo": {"required": ("mesh_path",), "optional": ("periodic_x", "periodic_y")},
}
SAMPLE_VARIABLES = ("mask", "area", "diff_x", "diff_y", "gamma")
MANIFEST = "manifest.json"
# netCDF-C/HDF5 are not thread-safe: two threads of one process writing files at once can crash the
# process (seen with the threaded scheduler). Every netCDF access of this module and of the reader holds it.
NETCDF_LOCK = threading.RLock()


class DatasetError(ValueError):
    """A data set configuration, directory or sample file is invalid; the message says which."""


# -- configuration ------------------------------------------------------------------------
@dataclass
class DatasetConfig:
    """What a data set holds. ``splits`` maps ``train``/``val``/``test`` to sample counts.

    ``tol`` is the relative tolerance in γ² of the fast exact method
    (:func:`diffnorm.normalization.exact_normalization`).
    """

    family: str = "sphere"
    family_params: dict = field(default_factory=dict)
    generator: str = "study"
    generator_params: dict = field(default_factory=dict)
    steps: int = 10
    seed: int = 0
    splits: dict = field(default_factory=lambda: {"train": 10, "val": 1, "test": 190})
    tol: float = 1e-12

    @classmethod
    def from_dict(cls, data: dict) -> DatasetConfig:
        if not isinstance(data, dict):
            raise DatasetError(f"a data set configuration must be a mapping, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(f"unknown configuration key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> DatasetConfig:
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such configuration file: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise DatasetError(f"cannot parse {path} as YAML: {exc}") from exc
        try:
            return cls.from_dict(data or {})
        except DatasetError as exc:
            raise DatasetError(f"{path}: {exc}") from exc

    def validate(self) -> DatasetConfig:
        """Check every field and normalize them in place (full generator parameters, plain JSON types)."""
        from .generators import GENERATORS, generator_params
        from .operator import check_steps

        if self.family == "dlnorm":
            raise DatasetError("family 'dlnorm' is an importer of existing samples (diffnorm.families.read_dlnorm), "
                               f"not a generated family; choose one of {', '.join(GENERATION_FAMILIES)}")
        if self.family not in GENERATION_FAMILIES:
            raise DatasetError(f"unknown grid family {self.family!r}; choose one of {', '.join(GENERATION_FAMILIES)}")
        if not isinstance(self.family_params, dict):
            raise DatasetError("family_params must be a mapping")
        spec = FAMILY_PARAMS[self.family]
        missing = [k for k in spec["required"] if k not in self.family_params]
        if missing:
            raise DatasetError(f"family {self.family!r} needs parameter(s): {', '.join(missing)}")
        unknown = sorted(set(self.family_params) - set(spec["required"]) - set(spec["optional"]))
        if unknown:
            raise DatasetError(f"unknown parameter(s) for family {self.family!r}: {', '.join(unknown)}; "
                               f"known: {', '.join(spec['required'] + spec['optional'])}")
        self.family_params = _family_params(self.family_params)
        if self.generator not in GENERATORS:
            raise DatasetError(f"unknown diffusivity generator {self.generator!r}; choose one of "
                               f"{', '.join(GENERATORS)}")
        try:
            full = generator_params(self.generator, self.generator_params)
            defaults = generator_params(self.generator)
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
        # 1 and 1.0 are the same parameter: store one spelling so equal configs give equal files
        self.generator_params = _plain({k: v if _is_int(defaults.get(k)) else _ints_to_floats(v)
                                        for k, v in full.items()})
        try:
            self.steps = check_steps(self.steps)
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise DatasetError(f"seed must be an integer >= 0, got {self.seed!r}")
        self.seed = int(self.seed)
        if not isinstance(self.splits, dict):
            raise DatasetError("splits must be a mapping such as {train: 10, val: 1, test: 190}")
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            raise DatasetError(f"unknown split(s): {', '.join(unknown)}; splits are {', '.join(SPLITS)}")
        splits = {}
        for name in SPLITS:
            n = self.splits.get(name, 0)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise DatasetError(f"the {name} count must be an integer >= 0, got {n!r}")
            splits[name] = int(n)
        self.splits = splits
        try:
            self.tol = float(self.tol)  # YAML reads "1e-12" (no dot) as a string
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"tol must be a number, got {self.tol!r}") from exc
        if not 0 < self.tol < 1:
            raise DatasetError(f"tol must be in (0, 1), got {self.tol}")
        return self

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    def build_geometry(self):
        """``(geometry, ocean mask)`` of the family (:func:`diffnorm.families.build_family`)."""
        return _build_geometry(self.family, self.family_params)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _ints_to_floats(v):
    """Integers (also inside lists) as floats: the generators' numeric parameters are real numbers."""
    if isinstance(v, (list, tuple)):
        return [_ints_to_floats(x) for x in v]
    return float(v) if _is_int(v) else v


def _family_params(params: dict) -> dict:
    """Plain JSON types with one spelling per value (floats for resolutions and ranges)."""
    out = {}
    for key, value in params.items():
        try:
            if key in ("res", "polar_limit"):
                value = float(value)
            elif key in ("lat_range", "lon_range"):
                value = [float(v) for v in value]
                if len(value) != 2:
                    raise ValueError("needs two values")
            elif key == "subsamples":
                value = int(value)
            elif key in ("periodic_x", "periodic_y"):
                value = bool(value)
            elif key == "mesh_path":
                value = str(value)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"bad family parameter {key}={value!r}: {exc}") from exc
        out[key] = value
    return _plain(out)


def _plain(obj):
    """JSON-compatible copy (tuples -> lists, numpy scalars -> Python)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _as_config(config: DatasetConfig | dict | str | os.PathLike) -> DatasetConfig:
    if isinstance(config, DatasetConfig):
        return DatasetConfig.from_dict(config.to_dict())
    if isinstance(config, dict):
        return DatasetConfig.from_dict(config)
    return DatasetConfig.from_yaml(config)


# -- the two calls into families/generators (one place to adapt) -----------------------------
def _build_geometry(family: str, params: dict):
    from .families import build_family

    try:
        return build_family(family, **params)
    except TypeError as exc:  # bad keyword for the family builder
        raise DatasetError(f"bad parameters for family {family!r}: {exc}") from exc


def _generate_grid(geometry, mask, config: DatasetConfig, seed: int):
    from .generators import generate_grid

    return generate_grid(geometry, mask, config.generator, config.generator_params, seed=seed, steps=config.steps)


# -- seeds and layout ------------------------------------------------------------------------
def sample_seed(dataset_seed: int, split: str, index: int) -> int:
    """The seed of sample ``index`` of ``split``: 63 bits from ``SeedSequence(seed, spawn_key=(split id, index))``.

    Split ids are train 0, val 1, test 2. Independent of worker count and of the other splits' sizes.
    """
    if split not in SPLIT_IDS:
        raise DatasetError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    ss = np.random.SeedSequence(int(dataset_seed), spawn_key=(SPLIT_IDS[split], int(index)))
    lo, hi = (int(x) for x in ss.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) & ((1 << 63) - 1)


def sample_path(split: str, index: int) -> str:
    """Relative path of a sample file inside the data set directory."""
    return f"{split}/sample_{int(index):06d}.nc"


def plan_samples(config: DatasetConfig) -> list[dict]:
    """The manifest's ``samples`` list: ``{"split", "index", "file", "seed"}`` for every sample."""
    return [{"split": split, "index": i, "file": sample_path(split, i), "seed": sample_seed(config.seed, split, i)}
            for split in SPLITS for i in range(config.splits[split])]


# -- one sample ------------------------------------------------------------------------------
def compute_sample(config: DatasetConfig | dict, split: str, index: int, geometry=None, mask=None):
    """``xarray.Dataset`` of one sample: grid variables, exact ``gamma`` and metadata (no file written)."""
    from . import __version__
    from .normalization import exact_normalization

    config = config if isinstance(config, DatasetConfig) else DatasetConfig.from_dict(config)
    if geometry is None:
        geometry, mask = config.build_geometry()
    seed = sample_seed(config.seed, split, index)
    grid = _generate_grid(geometry, mask, config, seed)
    gamma = exact_normalization(grid, config.steps, tol=config.tol)
    ds = grid.to_dataset()
    ds["gamma"] = (("y", "x"), np.where(grid.mask, gamma, np.nan).astype(np.float64))
    ds["gamma"].attrs.update({"method": "exact", "steps": config.steps, "tol": config.tol})
    ds.attrs.update({
        "family": config.family,
        "family_params": json.dumps(config.family_params, sort_keys=True),
        "generator": config.generator,
        "generator_params": json.dumps(config.generator_params, sort_keys=True),
        "seed": np.int64(seed),
        "steps": config.steps,
        "split": split,
        "index": int(index),
        "package_version": __version__,
    })
    return ds


def _write_sample(path: str, config_dict: dict, split: str, index: int, geometry, mask) -> tuple[str, float]:
    """Dask task: compute one sample and write it atomically. Returns ``(path, seconds)``."""
    from .grid import write_netcdf_atomic

    start = time.perf_counter()
    config = DatasetConfig(**config_dict)  # validated by the client
    ds = compute_sample(config, split, index, geometry, mask)
    with NETCDF_LOCK:
        write_netcdf_atomic(ds, path)
    return path, time.perf_counter() - start


def check_sample(path: str | os.PathLike, split: str | None = None, index: int | None = None,
                 seed: int | None = None, shape: tuple[int, int] | None = None) -> str | None:
    """``None`` when ``path`` is a complete, readable sample (matching the given metadata), else the reason."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        with NETCDF_LOCK, xr.open_dataset(path, cache=False) as ds:
            missing = [v for v in SAMPLE_VARIABLES if v not in ds.variables]
            if missing:
                return f"missing variable(s) {', '.join(missing)}"
            ds.load()  # reads every chunk: a truncated file fails here
            attrs = ds.attrs
            if shape is not None and tuple(ds["mask"].shape) != tuple(shape):
                return f"shape {tuple(ds['mask'].shape)} differs from {tuple(shape)}"
            for key, want in (("split", split), ("index", index), ("seed", seed)):
                if want is not None and (key not in attrs or str(attrs[key]) != str(want)):
                    return f"attribute {key}={attrs.get(key)!r} differs from {want!r}"
            if ds["gamma"].attrs.get("method") != "exact":
                return "gamma is not exact"
    except Exception as exc:  # netCDF4/HDF5 raise many exception types on corrupt files
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


# -- manifest ----------------------------------------------------------------------------------
def _manifest(config: DatasetConfig, shape, periodic_x: bool, periodic_y: bool, complete: bool) -> dict:
    from . import __version__

    return {
        "format": FORMAT,
        "package_version": __version__,
        "family": config.family,
        "family_params": config.family_params,
        "generator": config.generator,
        "generator_params": config.generator_params,
        "steps": config.steps,
        "seed": config.seed,
        "tol": config.tol,
        "method": "exact",
        "splits": dict(config.splits),
        "shape": [int(shape[0]), int(shape[1])],
        "periodic_x": bool(periodic_x),
        "periodic_y": bool(periodic_y),
        "complete": bool(complete),
        "samples": plan_samples(config),
    }


def write_json_atomic(data: dict, path: str | os.PathLike) -> None:
    """Write JSON to a temporary name then rename it over ``path``."""
    from .grid import write_atomic

    text = json.dumps(data, indent=1) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def load_manifest(directory: str | os.PathLike) -> dict:
    """Read and check ``DIRECTORY/manifest.json``."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no data set manifest at {path} (is {directory} a data set directory?)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise DatasetError(f"{path} is not a {FORMAT} manifest (format={got!r})")
    for key in ("splits", "shape", "samples"):
        if key not in manifest:
            raise DatasetError(f"{path} has no {key!r} entry")
    return manifest


_IDENTITY_KEYS = ("family", "family_params", "generator", "generator_params", "steps", "seed", "tol", "shape",
                  "periodic_x", "periodic_y")


def _check_compatible(old: dict, new: dict, directory: Path) -> None:
    diffs = [k for k in _IDENTITY_KEYS if old.get(k) != new.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in diffs)
        raise DatasetError(f"{directory} holds a data set with another configuration ({detail}); "
                           "use a new output directory")


def _clean_leftovers(directory: Path) -> int:
    """Delete temporary files a killed run left behind. Returns how many."""
    count = 0
    for sub in (directory, *(directory / s for s in SPLITS)):
        if sub.is_dir():
            for tmp in sub.glob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)
                count += 1
    return count


# -- generation ---------------------------------------------------------------------------------
def generate_dataset(output_dir: str | os.PathLike, config: DatasetConfig | dict | str | os.PathLike,
                     scheduler=None, n_workers: int | None = None, progress: bool = True) -> Path:
    """Generate (or complete) a data set in ``output_dir``; returns its path.

    ``scheduler``:

    - ``None`` (default): a :class:`distributed.LocalCluster` with ``n_workers`` worker processes
      (default one per core), one thread each;
    - ``"threads"``: the same with threads in this process (quick to start; for tests);
    - ``"synchronous"``: no Dask, samples one after the other in this process;
    - ``"tcp://HOST:PORT"`` (any scheduler address) or a :class:`distributed.Client`: an existing
      cluster (e.g. started by dask-jobqueue under SLURM/PBS). Workers must see ``output_dir``.

    Samples already present and readable are kept; temporary leftovers and corrupt files are
    removed and recomputed. The manifest is written (atomically) before the work with
    ``"complete": false`` and again at the end with ``"complete": true``. Failed samples are
    reported together in one :class:`DatasetError` after the others finished; run again to retry.
    """
    config = _as_config(config)
    directory = Path(output_dir)
    geometry, mask = config.build_geometry()
    mask = np.asarray(mask, dtype=bool)
    shape = tuple(mask.shape)
    px, py = bool(geometry.periodic_x), bool(getattr(geometry, "periodic_y", False))
    manifest = _manifest(config, shape, px, py, complete=False)
    if manifest["samples"]:  # cheap: catches generator/family mismatches before any cluster starts
        try:
            _generate_grid(geometry, mask, config, manifest["samples"][0]["seed"])
        except ValueError as exc:
            raise DatasetError(f"generator {config.generator!r} on family {config.family!r}: {exc}") from exc
    if (directory / MANIFEST).exists():
        _check_compatible(load_manifest(directory), manifest, directory)
    elif directory.exists() and any(directory.iterdir()):
        raise DatasetError(f"{directory} exists, is not empty and holds no {MANIFEST}; use a new output directory")
    for split in SPLITS:
        (directory / split).mkdir(parents=True, exist_ok=True)
    _clean_leftovers(directory)
    write_json_atomic(manifest, directory / MANIFEST)

    todo = []
    for s in manifest["samples"]:
        path = directory / s["file"]
        if path.exists():
            if check_sample(path, s["split"], s["index"], s["seed"], shape) is None:
                continue
            path.unlink()  # corrupt or foreign: redo
        todo.append(s)

    if todo:
        _run(directory, config, geometry, mask, todo, len(manifest["samples"]), scheduler, n_workers, progress)
    manifest["complete"] = True
    write_json_atomic(manifest, directory / MANIFEST)
    return directory


def _run(directory: Path, config: DatasetConfig, geometry, mask, todo: list[dict], total: int,
         scheduler, n_workers: int | None, progress: bool) -> None:
    from tqdm.auto import tqdm

    cfg = config.to_dict()
    done0 = total - len(todo)
    failures: list[str] = []
    bar = tqdm(total=total, initial=done0, desc="samples", unit="sample", disable=not progress)
    try:
        if scheduler == "synchronous":
            for s in todo:
                try:
                    _write_sample(str(directory / s["file"]), cfg, s["split"], s["index"], geometry, mask)
                except Exception as exc:
                    failures.append(f"{s['file']}: {type(exc).__name__}: {exc}")
                bar.update(1)
        else:
            client, cleanup = _client(scheduler, n_workers)
            try:
                _run_dask(client, directory, cfg, geometry, mask, todo, bar, failures)
            finally:
                cleanup()
    finally:
        bar.close()
    if failures:
        raise DatasetError(f"{len(failures)} of {len(todo)} sample(s) failed (run again to retry them):\n  "
                           + "\n  ".join(failures[:20]))


def _worker_environ() -> dict:
    """Dask's worker environment without ``MALLOC_TRIM_THRESHOLD_``: that setting also freezes glibc's mmap
    threshold at 128 KiB, so every large temporary of the exact method is mmapped and page-faulted afresh —
    measured 3.1 CPU s per 1° sample instead of 1.6 s. Thread caps (one core per worker) are kept."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def _client(scheduler, n_workers: int | None):
    """A ``distributed.Client`` for ``scheduler`` and a function that releases what was started here."""
    import dask
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler in (None, "processes", "threads"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = int(n_workers) if n_workers is not None else cores
        if workers < 1:
            raise DatasetError(f"the number of workers must be >= 1, got {workers}")
        with dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=scheduler != "threads",
                                   dashboard_address=None if scheduler == "threads" else ":0")
        client = Client(cluster)

        def cleanup():
            client.close()
            cluster.close()

        return client, cleanup
    if isinstance(scheduler, str):
        client = Client(scheduler)
        return client, client.close
    raise DatasetError(f"scheduler must be None, 'threads', 'synchronous', an address or a Client, got {scheduler!r}")


def _run_dask(client, directory: Path, cfg: dict, geometry, mask, todo, bar, failures: list[str]) -> None:
    from distributed import as_completed

    geo_future = client.scatter((geometry, mask), broadcast=True, hash=False)
    futures = {}
    for s in todo:
        f = client.submit(_write_sample_from_pair, str(directory / s["file"]), cfg, s["split"], s["index"],
                          geo_future, pure=False, key=f"diffnorm-sample-{s['split']}-{s['index']}-{os.getpid()}"
                          f"-{time.monotonic_ns()}")
        futures[f] = s
    for f in as_completed(futures):
        s = futures[f]
        try:
            f.result()
        except Exception as exc:
            failures.append(f"{s['file']}: {type(exc).__name__}: {exc}")
        f.release()
        bar.update(1)


def _write_sample_from_pair(path: str, config_dict: dict, split: str, index: int, pair) -> tuple[str, float]:
    geometry, mask = pair
    return _write_sample(path, config_dict, split, index, geometry, mask)


def dataset_status(directory: str | os.PathLike, verify: bool = False) -> dict:
    """Counts per split of samples present / missing (``verify`` opens every file)."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    out = {split: {"expected": 0, "present": 0, "bad": []} for split in SPLITS}
    for s in manifest["samples"]:
        st = out.setdefault(s["split"], {"expected": 0, "present": 0, "bad": []})
        st["expected"] += 1
        path = directory / s["file"]
        reason = check_sample(path, s["split"], s["index"], s["seed"], manifest["shape"]) if verify else (
            None if path.exists() else "missing")
        if reason is None:
            st["present"] += 1
        else:
            st["bad"].append(f"{s['file']}: {reason}")
    return out
