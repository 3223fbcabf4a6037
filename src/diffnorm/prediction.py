"""γ from a trained network for new grids: load a model, check the grid fits it, predict in batches.

A *model* is a ``torch.nn.Module`` plus a *meta* dict describing how it was trained. Two forms of
meta data are understood (see the README, "Evaluate, compare, predict, export, plot"):

- the training code's (:func:`diffnorm.pretrained.load_model`): ``input_transform``
  (:class:`diffnorm.transforms.inputs.InputTransform` state, with its ``channels``), ``target``,
  ``target_mean``, ``target_std`` (:class:`diffnorm.transforms.targets.TargetTransform`), ``steps``,
  ``periodic_x``/``periodic_y``. Its networks pad their input themselves using their
  ``periodic_x``/``periodic_y`` attributes, which are set from each grid before the forward pass;
- a plain form: ``channels`` (:data:`diffnorm.features.FEATURES`), ``standardizer``
  (:meth:`diffnorm.transforms.Standardizer.to_dict` or None), ``target`` — ``gamma``, ``gamma2``,
  ``inv_gamma``, ``log_gamma`` or ``log_ratio_analytic`` (log of γ over the analytic γ) —,
  ``target_mean``/``target_std``, ``steps`` and optional ``shape_multiple``, ``min_size``,
  ``periodic_x``/``periodic_y``.

Every mismatch between a grid and the model (channels, steps, periodicity, shape, inputs far
outside the standardized training range) raises :class:`ModelMismatchError` with what to do about
it: the network never silently returns γ for a problem it was not trained on.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .grid import Grid, read_grid
from .io import write_gamma

BACKENDS = ("torch", "onnxruntime")
TARGETS = ("gamma", "gamma2", "inv_gamma", "log_gamma", "log_ratio_analytic", "log_ratio_images")

#: standardized inputs with |z| above this are "far outside" the training distribution
Z_LIMIT = 12.0
#: error when more than this fraction of ocean cells has some channel beyond ``Z_LIMIT``
Z_FRACTION = 0.01

# Where the training code may define ``load_model`` / ``predict_gamma`` (first found wins).
_TRAINING_MODULES = ("diffnorm.pretrained", "diffnorm.models", "diffnorm.training")


class ModelMismatchError(ValueError):
    """The grid does not match what the model was trained for; the message says what differs."""


def _row_runs(rows: np.ndarray, ny: int, most: int = 3) -> str:
    """The runs of consecutive rows holding most of ``rows`` (one entry per flagged cell; at most ``most`` runs, in
    row order, with their share when some are left out): "rows 0–14, 166–179 of 180"."""
    present = np.unique(rows)
    breaks = np.nonzero(np.diff(present) > 1)[0]
    runs = np.split(present, breaks + 1)
    counts = np.bincount(rows, minlength=ny)
    runs.sort(key=lambda r: -counts[r].sum())
    shown = sorted(runs[:most], key=lambda r: r[0])
    text = ", ".join(f"{r[0]}" if r.size == 1 else f"{r[0]}–{r[-1]}" for r in shown)
    share = sum(counts[r].sum() for r in shown) / rows.size
    more = f" ({100 * share:.0f}% of them)" if len(runs) > most else ""
    return f"rows {text} of {ny}{more}"


def check_input_range(z: np.ndarray, mask: np.ndarray, channels: Sequence[str], model: str, where: str = "grid",
                      valid_range: dict | None = None, remedy: str = "use --force to predict anyway") -> None:
    """Raise :class:`ModelMismatchError` when more than :data:`Z_FRACTION` of the ocean cells have a standardized
    input ``z`` (``(C, ny, nx)``) beyond ±:data:`Z_LIMIT`: inputs the network never saw (wrong units, or a grid
    outside the model's valid range, e.g. polar ocean for a model trained with polar land). The message names the
    worst channel, the grid rows where those cells lie and the model's valid coastlines/grid, so the user can
    tell a units problem (everywhere) from a geographic one (a few rows)."""
    far_by_channel = np.abs(z[:, mask]) > Z_LIMIT
    far = far_by_channel.any(axis=0)
    if far.mean() <= Z_FRACTION:
        return
    worst = channels[int(np.argmax(far_by_channel.sum(axis=1)))]
    rows = np.nonzero(mask)[0][far]
    hint = ""
    if valid_range:
        known = [str(valid_range[k]) for k in ("grid", "coastlines") if valid_range.get(k)]
        if known:
            hint = f", or whether the grid is in {model}'s valid range ({'; '.join(known)})"
    raise ModelMismatchError(
        f"{where}: {100 * far.mean():.1f}% of the ocean cells have inputs more than {Z_LIMIT:g} standard deviations "
        f"from {model}'s training data (worst channel: {worst}; {_row_runs(rows, mask.shape[0])}); check the units "
        f"of area/diff_x/diff_y (SPEC §1){hint} — {remedy}")


def _training_function(name: str) -> Callable | None:
    for mod in _TRAINING_MODULES:
        try:
            module = importlib.import_module(mod)
        except ImportError:
            continue
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def _device(device: str | None):
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use --device cpu")
    return dev


def _first_conv_in_channels(model) -> int | None:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    return None


@dataclass
class Predictor:
    """A network in eval mode, its training meta data, and the device it runs on."""

    model: object
    meta: dict
    device: str | None = "cpu"
    name: str = "model"
    backend: str = "torch"
    #: test-time augmentation: "model" (the model's meta["tta"], none if absent), "none", "flips" or a list of flips
    tta: str | list[str] | None = "model"
    #: "32" (float32) or "bf16": the network's hidden layers in bfloat16
    #: (:func:`diffnorm.models.inference.forward_ocean`)
    precision: str = "32"
    #: override the model's ``exact_small`` (γ exact on ocean components of at most that many cells; 0: off,
    #: the network everywhere); None keeps the model's own
    exact_small: int | None = None
    _dev: object = field(default=None, init=False, repr=False)
    _session: object = field(default=None, init=False, repr=False)
    _geometry_cache: dict = field(default_factory=dict, init=False, repr=False)
    _fixed_periodicity: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        from .models.inference import check_precision, warn_if_bf16_emulated

        self.precision = check_precision(self.precision)
        if self.precision != "32" and self.backend != "torch":
            raise ValueError(f"precision {self.precision} needs backend 'torch' (the ONNX export is float32)")
        self._dev = _device(self.device)
        warn_if_bf16_emulated(self.precision, self._dev)
        self.model = self.model.to(self._dev).eval()
        self.meta = dict(self.meta)
        if self.exact_small is not None:
            from .transforms.targets import exact_small_override

            own = self.target_transform.to_dict()
            n = exact_small_override(self.exact_small, self.meta, own.get("exact_small", 0))
            self.meta["target_transform"] = {**own, "exact_small": n}
        channels = self.channels
        if not channels:
            raise ModelMismatchError(f"{self.name}: its meta data lists no input channels ('channels' or "
                                     "'input_transform')")
        n_in = _first_conv_in_channels(self.model)
        if n_in is not None and n_in != len(channels):
            raise ModelMismatchError(f"{self.name}: the network takes {n_in} input channels but its meta data "
                                     f"lists {len(channels)} ({', '.join(channels)}); the checkpoint is inconsistent")
        if self.transforms:
            from .transforms.inputs import CHANNELS as KNOWN

            unknown = [c for c in channels if c not in KNOWN]
            if unknown:
                raise ModelMismatchError(f"{self.name}: input channel(s) {', '.join(unknown)} unknown to this "
                                         f"version; known: {', '.join(KNOWN)}")
            it = self.input_transform
            if it.mean is None or it.std is None:
                raise ModelMismatchError(f"{self.name}: its input transform was never fitted (no mean/std)")
            self.target_transform  # noqa: B018 - validates the target kind
        else:
            target = self.meta.get("target", "gamma")
            if target not in TARGETS:
                raise ModelMismatchError(f"{self.name}: unknown target {target!r}; this version knows "
                                         f"{', '.join(TARGETS)}")
            std = self.standardizer
            if std is not None and std.mean.size != len(channels):
                raise ModelMismatchError(f"{self.name}: the input standardizer has {std.mean.size} channels, the "
                                         f"model {len(channels)}")
        if self.backend == "onnxruntime":
            self._session = self._onnx_session()

    def _onnx_session(self):
        """Export the network to ONNX once (checked against PyTorch to 1e-5) and open an onnxruntime session."""
        import tempfile

        import onnxruntime as ort
        import torch

        from .export import export_model

        if self._dev.type != "cpu":
            raise ValueError("backend 'onnxruntime' runs on the CPU here; use --device cpu or --backend torch")
        self._fixed_periodicity = {a: bool(getattr(self.model, a)) for a in ("periodic_x", "periodic_y")
                                   if hasattr(self.model, a)}
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "model.onnx"
            export_model(self.model, self.meta, path, "onnx", verify=True)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    # -- meta data ------------------------------------------------------------------------
    @classmethod
    def load(cls, model_ref: str | os.PathLike, device: str | None = "cpu", backend: str = "torch",
             tta: str | list[str] | None = "model", precision: str = "32",
             exact_small: int | None = None) -> Predictor:
        model, meta = load_model(model_ref)
        return cls(model, meta, device=device, name=str(model_ref), backend=backend, tta=tta, precision=precision,
                   exact_small=exact_small)

    @property
    def tta_transforms(self) -> tuple[str, ...]:
        """The flips the network runs on (:func:`diffnorm.transforms.augmentation.tta_transforms`)."""
        from .transforms.augmentation import tta_transforms

        return tta_transforms(self.tta, self.meta.get("tta"))

    @property
    def transforms(self) -> bool:
        """True for the training code's meta data (``input_transform``/``target_transform`` dicts of
        :mod:`diffnorm.transforms.inputs`/``targets``), False for the plain keys of the module docstring."""
        return isinstance(self.meta.get("input_transform"), dict)

    @property
    def input_transform(self):
        from .transforms.inputs import InputTransform

        return InputTransform.from_dict(self.meta["input_transform"])

    @property
    def target_transform(self):
        from .transforms.targets import TargetTransform

        state = self.meta.get("target_transform")
        if not isinstance(state, dict):  # the training code's flat keys
            state = {"kind": self.meta.get("target", "gamma"), "mean": self.meta.get("target_mean", 0.0),
                     "std": self.meta.get("target_std", 1.0)}
        try:
            return TargetTransform.from_dict(state)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelMismatchError(f"{self.name}: bad target transform {state}: {exc}") from exc

    @property
    def channels(self) -> list[str]:
        if self.transforms:
            return list(self.meta["input_transform"].get("channels") or [])
        return list(self.meta.get("channels") or self.meta.get("features") or [])

    def _padding_follows_grid(self) -> bool:
        """The network pads by the grid's periodicity at run time (the training code's models expose
        ``periodic_x``/``periodic_y`` attributes used in ``forward``), so any periodicity is fine."""
        import torch

        return (self._session is None and not isinstance(self.model, torch.jit.ScriptModule)
                and hasattr(self.model, "periodic_x") and hasattr(self.model, "periodic_y"))

    def _trained_periodicity(self) -> dict:
        if self._fixed_periodicity:
            return dict(self._fixed_periodicity)
        out = {}
        for axis in ("periodic_x", "periodic_y"):
            if self.meta.get(axis) is not None:
                out[axis] = bool(self.meta[axis])
            elif hasattr(self.model, axis):
                try:
                    out[axis] = bool(getattr(self.model, axis))
                except Exception:  # noqa: BLE001 - TorchScript attributes may not convert
                    pass
        return out

    @property
    def steps(self) -> int | None:
        steps = self.meta.get("steps")
        return None if steps is None else int(steps)

    @property
    def standardizer(self):
        from .transforms import Standardizer

        state = self.meta.get("standardizer")
        if state is None:
            return None
        return state if isinstance(state, Standardizer) else Standardizer.from_dict(state)

    # -- checks ---------------------------------------------------------------------------
    def check_grid(self, grid: Grid, steps: int | None = None, where: str = "grid") -> int:
        """Raise :class:`ModelMismatchError` when ``grid`` is not what the model was trained for.

        Returns M: ``steps`` if given, else the grid's own ``steps`` attribute, else the model's.
        """
        model_steps = self.steps
        grid_steps = None
        for key in ("steps", "steps_tuned"):
            if key in grid.attrs:
                grid_steps = int(grid.attrs[key])
                break
        if steps is not None and model_steps is not None and int(steps) != model_steps:
            raise ModelMismatchError(f"{where}: M = {steps} asked for, but {self.name} was trained for M = "
                                     f"{model_steps}; γ depends on M, so use a model trained for M = {steps} or "
                                     "the exact/randomized methods (diffnorm normalize)")
        if steps is None and grid_steps is not None and model_steps is not None and grid_steps != model_steps:
            raise ModelMismatchError(f"{where}: the grid says its diffusivities are for M = {grid_steps} "
                                     f"(attribute 'steps'), but {self.name} was trained for M = {model_steps}; "
                                     "pass --steps to override if the attribute is wrong")
        ny, nx = grid.shape
        mult = int(self.meta.get("shape_multiple") or 1)
        if mult > 1 and (ny % mult or nx % mult):
            raise ModelMismatchError(f"{where}: shape {ny}x{nx} is not divisible by {mult}, which {self.name}'s "
                                     "architecture needs; pad the grid with land to a multiple of it")
        min_size = int(self.meta.get("min_size") or 1)
        if min(ny, nx) < min_size:
            raise ModelMismatchError(f"{where}: shape {ny}x{nx} is smaller than {self.name}'s minimum {min_size}")
        if not self._padding_follows_grid():
            for axis, trained in self._trained_periodicity().items():
                if trained != getattr(grid, axis):
                    raise ModelMismatchError(
                        f"{where}: {axis} = {int(getattr(grid, axis))} but {self.name} pads with {axis} = "
                        f"{int(trained)} (fixed in this exported/scripted network); its padding would be wrong — "
                        "use the checkpoint with --backend torch")
        return int(steps if steps is not None else grid_steps if grid_steps is not None else model_steps or 0)

    def _prior(self, grid: Grid, steps: int) -> np.ndarray | None:
        """The training code's prior (analytic γ; exact γ on small ocean components), as its predict_gamma."""
        if not self.transforms:
            return None
        tt = self.target_transform
        needs = (tt.needs_prior or getattr(tt, "exact_small", 0) > 0
                 or any(c.startswith("analytic") for c in self.channels))
        if not needs:
            return None
        if hasattr(tt, "prior"):
            return tt.prior(grid, steps)
        from .transforms.targets import analytic_prior

        return analytic_prior(grid, steps)

    def _check_range(self, z: np.ndarray, grid: Grid, names: Sequence[str], where: str) -> None:
        check_input_range(z, grid.mask, names, self.name, where, self.meta.get("valid_range"))

    def inputs(self, grid: Grid, steps: int, check_range: bool = True, where: str = "grid",
               prior: np.ndarray | None = None) -> np.ndarray:
        """Standardized ``(C, ny, nx)`` float32 inputs of one grid."""
        if self.transforms:
            if prior is None:
                prior = self._prior(grid, steps)
            z = self._transform_inputs(grid, steps, prior)
            if check_range:
                from .transforms.inputs import FIXED

                keep = [k for k, c in enumerate(self.channels) if c not in FIXED]
                if keep:
                    self._check_range(z[keep], grid, [self.channels[k] for k in keep], where)
            return z.astype(np.float32)
        from .features import FEATURES

        unknown = [c for c in self.channels if c not in FEATURES]
        if unknown:
            raise ModelMismatchError(f"{self.name}: input channel(s) {', '.join(unknown)} unknown to this version; "
                                     f"known: {', '.join(FEATURES)}")
        feats = self._features(grid, steps)
        x = np.stack([feats[c] for c in self.channels])
        std = self.standardizer
        if std is not None:
            x = std.transform(x, grid.mask)
            if check_range:
                self._check_range(x, grid, self.channels, where)
        return x.astype(np.float32)

    def _cached(self, key: tuple, grid: Grid, compute: Callable[[], object]):
        import hashlib

        key = key + (grid.shape, grid.periodic_x, grid.periodic_y,
                     hashlib.sha1(np.packbits(grid.mask).tobytes()).hexdigest())
        if key not in self._geometry_cache:
            if len(self._geometry_cache) >= 8:
                self._geometry_cache.pop(next(iter(self._geometry_cache)))
            self._geometry_cache[key] = compute()
        return self._geometry_cache[key]

    def _transform_inputs(self, grid: Grid, steps: int, prior: np.ndarray | None) -> np.ndarray:
        """The training code's input transform, with the channels that depend on the mask only (the coast
        distance) computed once per geometry."""
        return self.input_transform.apply(*self._raw_inputs(grid, steps, prior))

    def tta_inputs(self, grid: Grid, steps: int, transforms: Sequence[str], check_range: bool = True,
                   where: str = "grid", prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Standardized inputs ``(T, C, ny, nx)`` of the grid's flips and their ocean masks ``(T, ny, nx)``.

        The training code's channels are computed once and flipped (:func:`~diffnorm.transforms.inputs.
        augment_channels`, equal to the flipped grid's own channels); the plain form recomputes them on each
        flipped grid. The range check looks at the unflipped grid (the flips hold the same values)."""
        from .transforms.augmentation import augment_cell_field, augment_grid

        masks = np.stack([augment_cell_field(grid.mask, t) for t in transforms])
        if not self.transforms:
            xs = [self.inputs(grid if t == "identity" else augment_grid(grid, t), steps,
                              check_range=check_range and k == 0, where=where,
                              prior=None if prior is None or t == "identity" else augment_cell_field(prior, t))
                  for k, t in enumerate(transforms)]
            return np.stack(xs), masks
        from .transforms.inputs import FIXED

        if prior is None:
            prior = self._prior(grid, steps)
        raw, valid = self._raw_inputs(grid, steps, prior)
        it = self.input_transform
        xs = it.flipped(raw, valid, transforms)
        if check_range:  # the flips hold the same values: check the first
            keep = [k for k, c in enumerate(self.channels) if c not in FIXED]
            if keep:
                self._check_range(xs[0][keep], grid, [self.channels[k] for k in keep], where)
        return xs, masks  # float32 (InputTransform.apply)

    def _raw_inputs(self, grid: Grid, steps: int, prior: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw channels and validity (``InputTransform.raw``), the coast distance cached per geometry."""
        from .transforms.inputs import raw_channels

        it = self.input_transform
        names = list(it.channels)
        geometric = [c for c in names if c == "distance"]
        other = [c for c in names if c not in geometric]
        parts = {}
        if other:
            x, ok = raw_channels(grid, steps, other, prior)
            parts.update({c: (x[k], ok[k]) for k, c in enumerate(other)})
        for c in geometric:
            parts[c] = self._cached(("raw", c), grid, lambda c=c: tuple(a[0] for a in raw_channels(grid, steps, [c])))
        x = np.stack([parts[c][0] for c in names])
        ok = np.stack([parts[c][1] for c in names])
        return x, ok

    def _features(self, grid: Grid, steps: int) -> dict[str, np.ndarray]:
        """Input channels; coast distances depend on the mask only and are cached per geometry (many fields
        on one grid are the usual case)."""
        from .features import compute_features

        names = self.channels
        feats = compute_features(grid, steps, [c for c in names if not c.startswith("distance_")])
        for c in names:
            if c.startswith("distance_"):
                feats[c] = self._cached(("feature", c), grid, lambda c=c: compute_features(grid, steps, [c])[c])
        return feats

    def decode(self, out: np.ndarray, grid: Grid, steps: int, prior: np.ndarray | None = None) -> np.ndarray:
        """Network output ``(ny, nx)`` → γ (NaN on land)."""
        if self.transforms:
            if prior is None:
                prior = self._prior(grid, steps)
            tt = self.target_transform
            gamma = tt.inverse(out, grid.mask, prior)
            if getattr(tt, "exact_small", 0) > 0:  # small components: exact γ (in the prior), not the network
                gamma = np.where(tt.fixed(grid), prior, gamma)
            return gamma
        y = np.asarray(out, dtype=np.float64) * float(self.meta.get("target_std", 1.0)) \
            + float(self.meta.get("target_mean", 0.0))
        target = self.meta.get("target", "gamma")
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if target == "gamma":
                gamma = y
            elif target == "gamma2":
                gamma = np.sqrt(y)
            elif target == "inv_gamma":
                gamma = 1.0 / y
            elif target == "log_gamma":
                gamma = np.exp(y)
            elif target == "log_ratio_images":
                from .normalization import image_normalization

                gamma = image_normalization(grid, steps) * np.exp(y)
            else:  # log_ratio_analytic
                from .normalization import analytic_normalization

                gamma = analytic_normalization(grid, steps) * np.exp(y)
        return np.where(grid.mask, gamma, np.nan)

    # -- prediction -----------------------------------------------------------------------
    def forward(self, x: np.ndarray, periodic: tuple[bool, bool] | None = None,
                ocean: np.ndarray | None = None) -> np.ndarray:
        """Raw network output for a ``(B, C, ny, nx)`` batch (first output channel), float64 numpy.

        ``periodic`` = the grids' ``(periodic_x, periodic_y)``, used by networks that pad at run time.
        ``ocean`` (``(B, ny, nx)`` boolean): the output is needed there only, so a valid-padding CNN skips the
        land rows/columns beyond the ocean's bounding box (output 0 there;
        :func:`diffnorm.models.inference.forward_ocean`)."""
        import torch

        from .models.inference import forward_ocean

        if periodic is not None and self._padding_follows_grid():
            self.model.periodic_x, self.model.periodic_y = bool(periodic[0]), bool(periodic[1])

        if self._session is not None:
            out = self._session.run(None, {self._session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
            return np.asarray(out[0], dtype=np.float64)[:, 0]
        with torch.inference_mode():
            out = forward_ocean(self.model, torch.as_tensor(x, device=self._dev), ocean, self.precision)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = out.detach().to("cpu").double().numpy()
        if out.ndim == 4:
            out = out[:, 0]
        return out

    def predict(self, grids: Sequence[Grid], steps: int | None = None, batch_size: int = 8, force: bool = False,
                names: Sequence[str] | None = None) -> list[np.ndarray]:
        """γ for each grid (NaN on land); grids of equal shape are run through the network together (with
        test-time augmentation, each grid's flips too: ``batch_size`` counts grids, not flips)."""
        from .transforms.augmentation import tta_mean

        transforms = self.tta_transforms
        names = list(names) if names is not None else [f"grid {k}" for k in range(len(grids))]
        ms = [self.check_grid(g, steps, where=n) for g, n in zip(grids, names, strict=True)]
        out: list[np.ndarray | None] = [None] * len(grids)
        groups: dict[tuple, list[int]] = {}
        for k, g in enumerate(grids):
            groups.setdefault((g.shape, g.periodic_x, g.periodic_y), []).append(k)
        for (_, px, py), idx in groups.items():
            for start in range(0, len(idx), max(1, batch_size)):
                chunk = idx[start:start + batch_size]
                priors = [self._prior(grids[k], ms[k]) for k in chunk]
                xs, masks = [], []
                for k, pr in zip(chunk, priors, strict=True):  # test-time augmentation: each flip of the grid
                    x, mk = self.tta_inputs(grids[k], ms[k], transforms, check_range=not force, where=names[k],
                                            prior=pr)
                    xs.append(x)
                    masks.append(mk)
                y = self.forward(np.concatenate(xs), (px, py), np.concatenate(masks))
                y = y.reshape(len(chunk), len(transforms), *y.shape[1:])
                for k, yk, pr in zip(chunk, y, priors, strict=True):
                    out[k] = self.decode(tta_mean(yk, transforms), grids[k], ms[k], pr)
        for k, gamma in enumerate(out):
            bad = grids[k].mask & ~(np.isfinite(gamma) & (gamma > 0))
            if bad.any():
                raise ModelMismatchError(f"{names[k]}: the network gave a non-positive or non-finite γ on "
                                         f"{int(bad.sum())} ocean cells; the grid is outside what it can handle")
        return out  # type: ignore[return-value]

    def predict_grid(self, grid: Grid, steps: int | None = None, force: bool = False) -> np.ndarray:
        return self.predict([grid], steps, batch_size=1, force=force)[0]


# -- loading ------------------------------------------------------------------------------
def _is_bundle(path: Path) -> bool:
    """A TorchScript archive written by :func:`save_bundle` or ``diffnorm export --format torchscript``."""
    import zipfile

    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("extra/meta.json") for n in z.namelist())


def load_model(model_ref: str | os.PathLike):
    """``(model in eval mode, meta)`` from a checkpoint path or a shipped model name (``sphere-1deg``).

    TorchScript files with embedded meta data (:func:`save_bundle`, ``diffnorm export --format
    torchscript``) load here; everything else goes to the training code's loader
    (:func:`diffnorm.pretrained.load_model`: Lightning checkpoints, slim model files, shipped names).
    """
    path = Path(model_ref)
    if _is_bundle(path):
        return load_bundle(path)
    fn = _training_function("load_model")
    if fn is not None:
        model, meta = fn(model_ref)
        return model.eval(), dict(meta)
    if not path.exists():
        raise FileNotFoundError(f"no such model: {model_ref} (neither a checkpoint file nor a shipped model name)")
    raise ValueError(f"cannot read model {model_ref}: not a TorchScript bundle, and the training code that reads "
                     "checkpoints is not installed")


def save_bundle(model, meta: dict, path: str | os.PathLike) -> None:
    """Save a model as TorchScript with its meta data (a self-contained file for :func:`load_model`)."""
    import json

    import torch

    scripted = torch.jit.script(model.eval())
    torch.jit.save(scripted, str(path), _extra_files={"meta.json": json.dumps(meta)})


def load_bundle(path: str | os.PathLike):
    import json

    import torch

    extra = {"meta.json": ""}
    try:
        model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError variants
        raise ValueError(f"cannot read model {path}: not a checkpoint this version can load ({exc})") from exc
    if not extra["meta.json"]:
        raise ValueError(f"model {path} carries no meta data (meta.json); cannot know its inputs")
    return model.eval(), json.loads(extra["meta.json"])


# -- files --------------------------------------------------------------------------------
def output_paths(inputs: Sequence[str | os.PathLike], output: str | os.PathLike) -> list[Path]:
    """One output per input: ``output`` itself for a single input unless it is a directory (or ends
    with '/'); for several inputs ``output`` is a directory and outputs keep the input names."""
    output = Path(output)
    is_dir = output.is_dir() or str(output).endswith(os.sep) or len(inputs) > 1
    if not is_dir:
        return [output]
    if output.exists() and not output.is_dir():
        raise ValueError(f"-o {output} is a file but {len(inputs)} inputs were given; give a directory")
    names = [Path(p).name for p in inputs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"several inputs are named {', '.join(sorted(dup))}; they would overwrite each other in "
                         f"{output}")
    return [output / n for n in names]


def predict_files(predictor: Predictor, inputs: Iterable[str | os.PathLike], output: str | os.PathLike,
                  steps: int | None = None, batch_size: int = 8, force: bool = False,
                  log: Callable[[str], None] | None = None) -> list[Path]:
    """Predict γ for grid files; writes one SPEC §4 file per input. Returns the output paths.

    Every grid is read and checked before anything is written.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ValueError("no grid file given")
    outs = output_paths(inputs, output)
    grids = [read_grid(p) for p in inputs]
    ms = [predictor.check_grid(g, steps, where=str(p)) for g, p in zip(grids, inputs, strict=True)]
    start = time.perf_counter()
    gammas = predictor.predict(grids, steps, batch_size=batch_size, force=force, names=[str(p) for p in inputs])
    elapsed = time.perf_counter() - start
    for p, o, g, gamma, m in zip(inputs, outs, grids, gammas, ms, strict=True):
        write_gamma(o, g, gamma, method="cnn", steps=m, model=predictor.name, source=p.name)
        if log:
            log(f"{p} -> {o}")
    if log:
        log(f"cnn: {len(grids)} grid(s) in {elapsed:.3f} s on {predictor._dev}")
    return outs
