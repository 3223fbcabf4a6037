"""LightningDataModule over one or more data set directories (``diffnorm-dataset/1``).

Training draws random patches (``patch_size`` cells square, or ``[rows, columns]``, of output plus the model's
receptive-field ``margin`` of context on every side, taken from the field padded the way the model pads: circular along
periodic axes, land along closed ones), optionally transformed by a random C-grid-consistent symmetry
(:mod:`diffnorm.transforms.augmentation`, applied to the *raw* channels before standardization).
``patch_size: null`` trains on whole fields. Validation and test run on whole fields (batch size 1,
the model pads them itself). Input and target standardization are fitted on the training split only.

Patches are a pure function of ``(seed, epoch, index)``: no sampler state, so a resumed run sees the same
data as an uninterrupted one, and two runs with the same seed see the same patches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..transforms.augmentation import FLIPS, TRANSFORMS, augment_arrays
from ..transforms.inputs import STUDY_CHANNELS, InputTransform, augment_channels, grid_from_fields
from ..transforms.targets import TargetTransform


class Field:
    """One sample in memory: raw channels + validity, raw target, mask, periodicity.

    The raw channels are held in float32 (logarithms, distances and ratios of order 1-10: rounding them moves a
    standardized input by at most ~1e-6, below what the float32 network input resolves anyway), which halves the
    largest array of a field held without the patch cache."""

    def __init__(self, item: dict, input_tf: InputTransform, target_tf: TargetTransform):
        grid = grid_from_fields(item)
        self.steps = int(item["steps"])
        prior = None
        if target_tf.needs_prior or any(c.startswith("analytic") for c in input_tf.channels):
            prior = target_tf.prior(grid, self.steps)
        x, self.valid = input_tf.raw(grid, self.steps, prior)
        self.x = x.astype(np.float32)
        self.ocean = grid.mask
        self.mask = grid.mask & ~target_tf.fixed(grid)  # cells that count in the loss
        self.y = target_tf.raw(np.asarray(item["gamma"], np.float64), grid.mask, prior)
        self.periodic_x, self.periodic_y = grid.periodic_x, grid.periodic_y
        self.name = str(item.get("path", "field"))
        self._padded: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    def padded(self, m: int, closed: str = "land"):
        """Raw channels and validity padded by ``m`` (wrap along periodic axes, land/edge along closed).

        The first padded copy then holds ``x`` and ``valid`` as views of its interior (the same values): a training
        field costs its padded channels once, not twice (11.2 → 7.7 MB per 1° field without the patch cache)."""
        if m not in self._padded:
            def pad(a, fill):
                if m == 0:
                    return a
                out = a
                for axis, per in ((-2, self.periodic_y), (-1, self.periodic_x)):
                    width = [(0, 0)] * a.ndim
                    width[axis] = (m, m)
                    if per:
                        out = np.pad(out, width, mode="wrap")
                    elif closed == "replicate":
                        out = np.pad(out, width, mode="edge")
                    else:
                        out = np.pad(out, width, mode="constant", constant_values=fill)
                return out
            px, pv = pad(self.x, 0.0), pad(self.valid, False)
            if m and not self._padded:  # hold the raw channels once, as the interior of their first padded copy
                inner = (Ellipsis, slice(m, -m), slice(m, -m))
                self.x, self.valid = px[inner], pv[inner]
            self._padded[m] = (px, pv)
        return self._padded[m]


def window_origin(transform: str, j0: int, i0: int, window: tuple[int, int], field: tuple[int, int]) -> tuple[int, int]:
    """Where a window at ``(j0, i0)`` of a field lands once the whole field is transformed.

    Transforming a window equals cropping the transformed field at this origin (flips mirror it; a transpose
    swaps its axes). Face fields shift by one cell on a flip and wrap at the edge: that wrapped cell is the extra
    context cell the patches trim, so the two agree on everything they keep."""
    (h, w), (ny, nx) = window, field
    for step in TRANSFORMS[transform]:
        if step == "flip_x":
            i0 = (nx - w - i0) % nx  # modulo: a window that wraps across a periodic seam
        elif step == "flip_y":
            j0 = (ny - h - j0) % ny
        else:  # transpose
            j0, i0, h, w, ny, nx = i0, j0, w, h, nx, ny
    return j0, i0


def _span(start: int, length: int, period: int, wraps: bool, offset: int = 0) -> slice | np.ndarray:
    """Indices ``offset + start + k`` for ``k < length``, modulo ``period`` if the window ``wraps`` (then an
    index array; otherwise a slice, a view)."""
    if not wraps:
        return slice(offset + start, offset + start + length)
    return offset + (start + np.arange(length)) % period


def _index(rows: slice | np.ndarray, cols: slice | np.ndarray) -> tuple:
    """``[..., rows, cols]`` for NumPy and torch alike (two index arrays index the outer product)."""
    if isinstance(rows, np.ndarray) and isinstance(cols, np.ndarray):
        rows, cols = rows[:, None], cols[None, :]
    return rows, cols


def patch_shape(patch_size: int | Sequence[int]) -> tuple[int, int]:
    """``(rows, columns)`` of the training patches from one side or a pair; both positive."""
    if isinstance(patch_size, (int, np.integer)):
        shape = (patch_size, patch_size)
    else:
        shape = tuple(patch_size) if isinstance(patch_size, Sequence) else ()
    if len(shape) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                  for v in shape):
        raise ValueError(f"patch_size must be a positive int or [rows, columns] of positive ints, got {patch_size!r}")
    return int(shape[0]), int(shape[1])


class PatchDataset(Dataset):
    """Random patches (with context margin) of the training fields, optionally transformed.

    A patch is a pure function of ``(seed, epoch, index)``. With ``cache`` (default) each field is padded,
    transformed and standardized once per transform (float32, cached on first use; :meth:`precompute` fills the
    cache before DataLoader workers fork, so they share it), and a patch is a slice of that: 0.2 ms instead of
    1.3 ms per patch of 128² + margin 32. Without it (data sets too large to hold 4 float32 copies of every field
    in memory) each patch's window is cropped, transformed and standardized on its own. Both give the same
    numbers to the bit (tested).

    With ``on_device`` (needs ``cache``) an item is only the patch's address, ``{"patch": [field, transform, row,
    column, height, width]}``, and :meth:`gather` slices a batch of them from a copy of the cache on the batch's
    device (the data module does it after the batch is moved). On a GPU the patches then cost no CPU time and
    no host-to-device copy: the DataLoader path, one worker, delivers 27 batches of 32 patches per second on this
    machine (collating and handing over 28 MB per batch), which capped GPU training at 23 steps per second.

    With ``wrap`` (the data module's default) a patch along a periodic axis starts at any cell and wraps across
    the seam, so every column of a global grid is sampled equally often. Without it a window lies inside the
    field, and the cells within a patch width of the seam are sampled less: on a 0–360° grid with patches of 128
    columns, those at 10°E (Norway, the Baltic) 12× less often than mid-basin ones."""

    def __init__(self, fields: list[Field], input_tf: InputTransform, target_tf: TargetTransform,
                 patch_size: int | Sequence[int], margin: int, samples_per_epoch: int,
                 augment: tuple[str, ...] = (), seed: int = 0,
                 closed: str = "land", cache: bool = True, on_device: bool = False, wrap: bool = False):
        if on_device and not cache:
            raise ValueError("patches on the device slice the cache: on_device needs cache=True")
        self.fields, self.input_tf, self.target_tf = fields, input_tf, target_tf
        self.patch, self.margin, self.n = patch_shape(patch_size), int(margin), int(samples_per_epoch)
        self.augment, self.seed, self.closed, self.cache = tuple(augment), int(seed), closed, bool(cache)
        self.on_device, self.wrap = bool(on_device), bool(wrap)
        self.epoch = 0
        self._ready: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._on: dict[tuple[str, int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.n

    def transformed(self, k: int, t: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Field ``k`` under transform ``t``: standardized padded inputs (margin + 1), standardized target, mask."""
        if (k, t) not in self._ready:
            f = self.fields[k]
            x, ys, mask = self._standardized(*f.padded(self.margin + 1, self.closed), f.y, f.mask, t)
            self._ready[(k, t)] = (x, ys, np.ascontiguousarray(mask))
        return self._ready[(k, t)]

    def _standardized(self, x, valid, y, mask, t: str):
        """Raw channels + validity and target + mask (of a field or a window) → transformed, standardized."""
        if t != "identity":
            x, valid = augment_channels(x, valid, self.input_tf.channels, t)
            cells = augment_arrays({"y": y, "mask": mask}, t, {})
            y, mask = cells["y"], cells["mask"]
        ys = np.where(mask, (y - self.target_tf.mean) / self.target_tf.std, 0.0).astype(np.float32)
        return self.input_tf.apply(x, valid), ys, mask

    def precompute(self) -> None:
        for k in range(len(self.fields)):
            for t in self._choices(*self.fields[k].shape) or ("identity",):
                self.transformed(k, t)

    def _window_shape(self, ny: int, nx: int) -> tuple[int, int]:
        return min(self.patch[0], ny), min(self.patch[1], nx)

    def _choices(self, ny: int, nx: int) -> list[str]:
        ph, pw = self._window_shape(ny, nx)
        return [t for t in self.augment if ph == pw or not ("transpose" in t or t.startswith("rot9")
                                                             or t.startswith("rot27"))]

    def locate(self, i: int) -> tuple[int, str, int, int, int, int]:
        """Patch ``i`` of this epoch: field, transform and window (row, column, height, width of the target cells
        in the untransformed field; the inputs add the margin around them)."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        k = int(rng.integers(len(self.fields)))
        f = self.fields[k]
        ny, nx = f.shape
        ph, pw = self._window_shape(ny, nx)
        j0 = int(rng.integers(ny if self.wrap and f.periodic_y and ph < ny else ny - ph + 1))
        i0 = int(rng.integers(nx if self.wrap and f.periodic_x and pw < nx else nx - pw + 1))
        t = "identity"
        if self.augment:
            choices = self._choices(ny, nx)
            t = choices[int(rng.integers(len(choices)))]
        return k, t, j0, i0, ph, pw

    def _cached_slices(self, k: int, t: str, j0: int, i0: int, ph: int, pw: int) -> tuple[tuple, tuple]:
        """Where a window lies in the field's cached, transformed copy: indices of the inputs and of the cells.

        The cached inputs are padded by ``margin + 1``, circularly along periodic axes, so they repeat with the
        field's period there: a window that wraps across the seam reads them modulo that period."""
        ny, nx = self.fields[k].shape
        a, b = window_origin(t, j0, i0, (ph, pw), (ny, nx))
        if "transpose" in TRANSFORMS[t]:
            ph, pw, ny, nx = pw, ph, nx, ny
        m = self.margin + 1  # one extra cell: face fields shift by one under flips
        wy, wx = a + ph > ny, b + pw > nx  # (only along a periodic axis, where locate lets windows wrap)
        inputs = _index(_span(a, ph + 2 * m - 2, ny, wy, 1), _span(b, pw + 2 * m - 2, nx, wx, 1))
        cells = _index(_span(a, ph, ny, wy), _span(b, pw, nx, wx))
        return (slice(None), *inputs), cells

    def patch_at(self, k: int, t: str, j0: int, i0: int, ph: int, pw: int) -> tuple[np.ndarray, ...]:
        """Standardized inputs (with margin), target and mask of field ``k``'s window at ``(j0, i0)`` under
        transform ``t`` (a window past a periodic axis' end wraps)."""
        if self.cache:
            x, ys, mask = self.transformed(k, t)
            inputs, cells = self._cached_slices(k, t, j0, i0, ph, pw)
            return x[inputs], ys[cells], mask[cells]
        return self.window(k, t, j0, i0, ph, pw)

    def __getitem__(self, i: int) -> dict:
        k, t, j0, i0, ph, pw = self.locate(i)
        if self.on_device:
            return {"patch": torch.tensor([k, list(TRANSFORMS).index(t), j0, i0, ph, pw])}
        x, ys, mask = self.patch_at(k, t, j0, i0, ph, pw)
        return {"x": torch.from_numpy(np.ascontiguousarray(x)),
                "y": torch.from_numpy(np.ascontiguousarray(ys[None])),
                "mask": torch.from_numpy(np.ascontiguousarray(mask[None]))}

    def gather(self, patches: torch.Tensor | list, device: torch.device | str | None = None) -> dict:
        """The batch of patches addressed by ``patches`` (B, 6), sliced on ``device`` (default: the tensor's) from
        a copy of the cache there (made on first use of each field and transform). Addresses given as a list
        (read on the host before the transfer) spare a GPU→CPU synchronization per batch."""
        if isinstance(patches, torch.Tensor):
            device, patches = device or patches.device, patches.tolist()
        dev, names = torch.device(device or "cpu"), list(TRANSFORMS)
        out: dict[str, list] = {"x": [], "y": [], "mask": []}
        for k, ti, j0, i0, ph, pw in patches:
            key = (str(dev), k, names[ti])
            if key not in self._on:
                self._on[key] = tuple(torch.from_numpy(v).to(dev) for v in self.transformed(k, names[ti]))
            x, ys, mask = self._on[key]
            inputs, cells = (tuple(torch.as_tensor(i, device=dev) if isinstance(i, np.ndarray) else i for i in idx)
                             for idx in self._cached_slices(k, names[ti], j0, i0, ph, pw))
            out["x"].append(x[inputs])
            out["y"].append(ys[cells][None])
            out["mask"].append(mask[cells][None])
        return {name: torch.stack(v) for name, v in out.items()}

    def window(self, k: int, t: str, j0: int, i0: int, ph: int, pw: int):
        """One patch without the cache: crop the padded raw window, transform it, trim the extra cell, standardize."""
        f, m = self.fields[k], self.margin + 1
        (ny, nx), (x, valid) = f.shape, f.padded(m, self.closed)
        wy, wx = j0 + ph > ny, i0 + pw > nx
        # padded index q holds the field's cell (q - m) mod n along a periodic axis
        win = (slice(None), *_index(_span(j0 - m, ph + 2 * m, ny, wy, m), _span(i0 - m, pw + 2 * m, nx, wx, m)))
        cells = _index(_span(j0, ph, ny, wy), _span(i0, pw, nx, wx))
        x, ys, mask = self._standardized(x[win], valid[win], f.y[cells], f.mask[cells], t)
        return x[:, 1:-1, 1:-1], ys, mask  # standardizing is per cell: trimming after it changes nothing


class FieldDataset(Dataset):
    """Whole fields, standardized; the model pads them itself."""

    def __init__(self, fields: list[Field], input_tf: InputTransform, target_tf: TargetTransform):
        self.fields, self.input_tf, self.target_tf = fields, input_tf, target_tf

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, i: int) -> dict:
        f = self.fields[i]
        ys = np.where(f.mask, (f.y - self.target_tf.mean) / self.target_tf.std, 0.0)
        return {"x": torch.from_numpy(self.input_tf.apply(f.x, f.valid)),
                "y": torch.from_numpy(ys[None].astype(np.float32)),
                "mask": torch.from_numpy(f.mask[None].copy()),
                "ocean": torch.from_numpy(f.ocean[None].copy())}


def _dirs(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


class NormalizationDataModule(L.LightningDataModule):
    """Data for :class:`~diffnorm.trainers.NormalizationTask`.

    Args:
        data_dirs: data set directories; their ``train`` splits are pooled (and ``val``/``test`` unless
            ``val_dirs``/``test_dirs`` are given).
        channels: input channels (:data:`diffnorm.transforms.inputs.CHANNELS`; default the study's
            diff_x, diff_y, area, mask).
        target: what the network predicts (:data:`diffnorm.transforms.targets.TARGETS`).
        patch_size: side of the training patches in cells, or ``[rows, columns]`` (``None``: whole fields). A
            patch as tall as the field (``[180, 91]`` on a 180 × 360 grid) samples every row alike; square
            patches shorter than a closed axis sample the rows near its ends less (see :class:`PatchDataset`).
        samples_per_epoch: patches per training epoch (whole fields: ignored, one pass over the fields).
        batch_size: training batch size (validation/test: 1 field per batch).
        augment: ``False``, ``True`` (the flips that keep a field's shape and periodicity: identity, flip_x,
            flip_y, rot180) or a list of names from :data:`diffnorm.transforms.augmentation.TRANSFORMS`.
        margin: context cells around a patch; the task sets it to its model's ``margin``.
        seed: patch sampling seed.
        max_train / max_val / max_test: use at most that many fields per directory (None: all).
        exact_small: γ on ocean components of at most this many cells is exact, not learned (0: off; see
            :mod:`diffnorm.transforms.targets`).
        cache_patches: hold every training field standardized under each flip in memory (float32; ≈ 0.7 GB for
            68 fields of 180 × 360 with 4 flips) and slice patches from it, 6× faster; ``False`` for data sets
            too large for that (the same patches, computed per window).
        patches_on_device: the training DataLoader yields only each patch's address and the patches are sliced
            from a copy of that cache on the training device (``on_after_batch_transfer``): the same patches,
            without CPU work or host-to-device copies per batch, for GPUs fed by few CPU cores. It keeps the cache
            on the device too (≈ 0.8 GB for those 68 fields); ``num_workers`` then applies to validation only.
        wrap_patches: along a periodic axis a patch may start at any cell and wrap across the seam, so every
            cell is sampled equally often there (``False``: windows inside the field, as before this option,
            which undersamples the cells near the seam; see :class:`PatchDataset`).
    """

    def __init__(self, data_dirs: list[str] | str = "data/study", channels: list[str] | None = None,
                 target: str = "gamma", patch_size: int | list[int] | None = 64, samples_per_epoch: int = 64,
                 batch_size: int = 8, augment: bool | list[str] = False, margin: int = 0, seed: int = 0,
                 num_workers: int = 0, val_dirs: list[str] | str | None = None,
                 test_dirs: list[str] | str | None = None, closed: str = "land", max_train: int | None = None,
                 max_val: int | None = None, max_test: int | None = None, exact_small: int = 0,
                 cache_patches: bool = True, patches_on_device: bool = False, wrap_patches: bool = True):
        super().__init__()
        self.data_dirs = _dirs(data_dirs)
        self.val_dirs = _dirs(val_dirs) or self.data_dirs
        self.test_dirs = _dirs(test_dirs) or self.data_dirs
        self.channels = list(channels) if channels is not None else list(STUDY_CHANNELS)
        self.target = target
        self.patch_size = None if patch_size is None else patch_shape(patch_size)
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        if augment is True:
            augment = list(FLIPS)
        elif not augment:
            augment = []
        for t in augment:
            if t not in TRANSFORMS:
                raise ValueError(f"unknown augmentation {t!r}; choose from {', '.join(TRANSFORMS)}")
        self.augment = tuple(augment)
        self.margin = int(margin)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.closed = closed
        self.cache_patches = bool(cache_patches)
        self.patches_on_device = bool(patches_on_device)
        self.wrap_patches = bool(wrap_patches)
        if self.patches_on_device and not self.cache_patches:
            raise ValueError("patches_on_device slices the patch cache: it needs cache_patches: true")
        self.limits = {"train": max_train, "val": max_val, "test": max_test}
        self.input_transform = InputTransform(self.channels)
        self.target_transform = TargetTransform(target, exact_small=exact_small)
        self.fields: dict[str, list[Field]] = {}
        self.steps: int | None = None
        self.train_set: PatchDataset | None = None

    def _load(self, split: str, dirs: list[str]) -> list[Field]:
        from ..datasets import NormalizationDataset

        out = []
        for d in dirs:
            if not (Path(d) / "manifest.json").exists():
                raise FileNotFoundError(f"no data set at {d} (no manifest.json); generate one with "
                                        "`diffnorm dataset generate`")
            ds = NormalizationDataset(d, split)
            n = len(ds) if self.limits[split] is None else min(len(ds), int(self.limits[split]))
            out += [Field(ds[i], self.input_transform, self.target_transform) for i in range(n)]
        steps = {f.steps for f in out}
        if len(steps | ({self.steps} if self.steps else set())) > 1:
            raise ValueError(f"the {split} fields mix numbers of steps M: {sorted(steps)}; γ depends on M")
        if steps:
            self.steps = steps.pop()
        return out

    def setup(self, stage: str | None = None) -> None:
        if "train" not in self.fields:
            train = self._load("train", self.data_dirs)
            if not train:
                raise ValueError(f"no training fields in {', '.join(self.data_dirs)}")
            self.fields["train"] = train
            self.input_transform.fit([(f.x, f.valid) for f in train])
            self.target_transform.fit([f.y for f in train], [f.mask for f in train])
        if stage in (None, "fit", "validate") and "val" not in self.fields:
            self.fields["val"] = self._load("val", self.val_dirs)
        if stage in (None, "test") and "test" not in self.fields:
            self.fields["test"] = self._load("test", self.test_dirs)

    def use_standardization(self, input_transform: dict, target_transform: dict) -> None:
        """Standardize with these statistics (``to_dict`` of an :class:`InputTransform` / :class:`TargetTransform`,
        a trained model's) instead of those fitted on the training fields: what a warm start needs, since the
        loaded weights only compute the same γ in the units they were trained in. The transforms are changed in
        place (the fields and patch sets refer to them; they standardize on use), ``exact_small`` stays this
        module's."""
        if list(input_transform["channels"]) != list(self.channels) or target_transform["kind"] != self.target:
            raise ValueError(f"standardization for channels/target {input_transform['channels']}/"
                             f"{target_transform['kind']} cannot serve this data module's "
                             f"{self.channels}/{self.target}")
        if input_transform.get("mean") is None or input_transform.get("std") is None:
            raise ValueError("the input standardization to keep was never fitted (no mean/std)")
        self.input_transform.mean = np.asarray(input_transform["mean"], np.float64)
        self.input_transform.std = np.asarray(input_transform["std"], np.float64)
        self.target_transform.mean = float(target_transform["mean"])
        self.target_transform.std = float(target_transform["std"])

    @property
    def periodic_x(self) -> bool:
        return bool(self.fields["train"][0].periodic_x)

    @property
    def periodic_y(self) -> bool:
        return bool(self.fields["train"][0].periodic_y)

    @property
    def shape(self) -> list[int]:
        return list(self.fields["train"][0].shape)

    def train_dataloader(self) -> DataLoader:
        fields = self.fields["train"]
        if self.patch_size is None:
            return DataLoader(FieldDataset(fields, self.input_transform, self.target_transform), batch_size=1,
                              shuffle=False, num_workers=self.num_workers)
        self.train_set = PatchDataset(fields, self.input_transform, self.target_transform, self.patch_size,
                                      self.margin, self.samples_per_epoch, self.augment, self.seed, self.closed,
                                      self.cache_patches, self.patches_on_device, self.wrap_patches)
        if self.trainer is not None:
            self.train_set.epoch = int(self.trainer.current_epoch)
        if self.patches_on_device:  # addresses only: no workers, nothing to pin
            return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False)
        if self.num_workers and self.cache_patches:
            self.train_set.precompute()  # once, before the workers fork (they share it)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          pin_memory=torch.cuda.is_available())

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, dict) and "patch" in batch:  # read the addresses here, on the host: no sync later
            return {"patch": batch["patch"].tolist()}
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, dict) and "patch" in batch and self.train_set is not None:
            device = self.trainer.strategy.root_device if self.trainer is not None else None
            return self.train_set.gather(batch["patch"], device)
        return batch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(FieldDataset(self.fields["val"], self.input_transform, self.target_transform),
                          batch_size=1, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(FieldDataset(self.fields["test"], self.input_transform, self.target_transform),
                          batch_size=1, num_workers=self.num_workers)

    def state_dict(self) -> dict:
        return {"input_transform": self.input_transform.to_dict(), "target_transform": self.target_transform.to_dict()}
