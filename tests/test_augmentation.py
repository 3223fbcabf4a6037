"""Augmentation keeps the C-grid consistent: exact γ of the transformed grid = transformed γ."""

import numpy as np
import pytest

from diffnorm.features import analytic_channel, grid_signed_distance
from diffnorm.grid import Grid
from diffnorm.normalization import bruteforce_normalization, exact_normalization
from diffnorm.transforms import (
    TRANSFORMS,
    Standardizer,
    augment_and_standardize,
    augment_arrays,
    augment_cell_field,
    augment_grid,
    augment_sample,
    random_transform,
)
from tests.conftest import PERIODIC_CASES, dense_gamma, make_grid

STEPS = 4


@pytest.fixture(scope="module", params=PERIODIC_CASES, ids=lambda p: f"px{int(p[0])}py{int(p[1])}")
def sample(request):
    px, py = request.param
    grid = make_grid(9, 12, px, py, seed=3)  # non-square: a transpose changes the shape
    return grid, dense_gamma(grid, STEPS)


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_exact_gamma_of_transformed_grid_is_transformed_gamma(sample, transform):
    grid, gamma = sample
    new_grid, new_gamma = augment_sample(grid, gamma, transform)
    recomputed = bruteforce_normalization(new_grid, STEPS)
    assert np.array_equal(np.isnan(recomputed), ~new_grid.mask)  # land stays land
    ocean = new_grid.mask
    assert np.max(np.abs(recomputed[ocean] / new_gamma[ocean] - 1)) < 1e-10
    assert new_grid.n_ocean == grid.n_ocean


def test_fast_exact_on_transformed_grid():
    grid = make_grid(16, 20, True, False, seed=5)
    gamma = exact_normalization(grid, 6)
    for t in ("rot90", "flip_x", "antitranspose"):
        g2, gm2 = augment_sample(grid, gamma, t)
        e = exact_normalization(g2, 6)
        assert np.nanmax(np.abs(e / gm2 - 1)) < 1e-10


def test_naive_flip_without_face_shift_is_wrong(sample):
    """Negative control: mirroring diff_x like a cell field breaks the operator (so the test bites)."""
    grid, gamma = sample
    wrong = Grid(grid.mask[:, ::-1], grid.area[:, ::-1], grid.diff_x[:, ::-1], grid.diff_y[:, ::-1],
                 grid.periodic_x, grid.periodic_y)
    recomputed = bruteforce_normalization(wrong, STEPS)
    assert np.nanmax(np.abs(recomputed / gamma[:, ::-1] - 1)) > 1e-3


def test_hand_derived_flip_and_rotation():
    ny, nx = 2, 3
    diff_x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # east faces; last column = wrap face
    diff_y = np.array([[7.0, 8.0, 9.0], [0.0, 0.0, 0.0]])
    grid = Grid(np.ones((ny, nx), int), np.ones((ny, nx)), diff_x, diff_y, True, False)
    flipped = augment_grid(grid, "flip_x")
    # new cell i' = 2 - i: face (0|1) -> (2|1) = east face of new cell 1; face (1|2) -> east face of new 0;
    # wrap face (2|0) -> (0|2) = wrap face of new cell 2
    np.testing.assert_array_equal(flipped.diff_x, [[2.0, 1.0, 3.0], [5.0, 4.0, 6.0]])
    np.testing.assert_array_equal(flipped.diff_y, diff_y[:, ::-1])
    rot = augment_grid(grid, "rot90")  # np.rot90: new[a, b] = old[b, nx-1-a]
    assert rot.shape == (3, 2) and rot.periodic_y and not rot.periodic_x
    np.testing.assert_array_equal(rot.diff_x, np.rot90(diff_y))
    # new north face of (a, b) joins old (b, 2-a) and (b, 1-a): old east face of (b, 1-a); wrap for a = 2
    np.testing.assert_array_equal(rot.diff_y, [[2.0, 5.0], [1.0, 4.0], [3.0, 6.0]])


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_group_structure_and_cell_fields(transform):
    a = np.arange(12.0).reshape(3, 4)
    expected = {"identity": a, "flip_x": a[:, ::-1], "flip_y": a[::-1], "rot90": np.rot90(a),
                "rot180": np.rot90(a, 2), "rot270": np.rot90(a, 3), "transpose": a.T,
                "antitranspose": np.rot90(a, 2).T}[transform]
    np.testing.assert_array_equal(augment_cell_field(a, transform), expected)
    # batched (N, C, ny, nx) input works on the last two axes
    batch = np.stack([a, 2 * a])[None]
    np.testing.assert_array_equal(augment_cell_field(batch, transform)[0, 1], 2 * expected)


def test_inverse_transforms_restore_grid():
    grid = make_grid(9, 12, True, True, seed=1)
    inverse = {"rot90": "rot270", "rot270": "rot90"}
    for t in TRANSFORMS:
        back = augment_grid(augment_grid(grid, t), inverse.get(t, t))
        for name in ("mask", "area", "diff_x", "diff_y"):
            np.testing.assert_array_equal(getattr(back, name), getattr(grid, name))


def test_features_commute_with_transforms():
    grid = make_grid(9, 12, True, False, seed=2)
    for t in TRANSFORMS:
        g2 = augment_grid(grid, t)
        for metric in ("manhattan", "euclidean"):
            np.testing.assert_array_equal(grid_signed_distance(g2, metric),
                                          augment_cell_field(grid_signed_distance(grid, metric), t))
        # equivariant wherever a cell has an active face on both axes (elsewhere analytic_normalization
        # falls back to the cell's own inactive east/north face, which a flip turns into another face)
        both = _has_faces(g2)
        np.testing.assert_allclose(analytic_channel(g2, STEPS)[both],
                                   augment_cell_field(analytic_channel(grid, STEPS), t)[both], rtol=1e-14)


def _has_faces(g):
    ax = g.active_x | np.roll(g.active_x, 1, axis=1)
    ay = g.active_y | np.roll(g.active_y, 1, axis=0)
    return g.mask & ax & ay


def test_restandardization_from_raw_originals():
    grids = [make_grid(9, 12, seed=s) for s in range(3)]
    channels = ["diff_x", "diff_y", "area"]

    def raw(g):
        return {"mask": g.mask, "diff_x": np.where(g.active_x, g.diff_x, 0.0),
                "diff_y": np.where(g.active_y, g.diff_y, 0.0), "area": g.area}

    x = np.stack([np.stack([raw(g)[c] for c in channels]) for g in grids])
    std = Standardizer("partial", channels).fit(x, np.stack([g.mask for g in grids]))
    for t in TRANSFORMS:
        z = augment_and_standardize(raw(grids[0]), t, std, channels)
        g2 = augment_grid(grids[0], t)
        expected = std.transform(np.stack([raw(g2)[c] for c in channels]), g2.mask)
        np.testing.assert_array_equal(z, expected)
        assert np.all(z[:, ~g2.mask] == 0)  # land stays land (0 after partial scaling)


def test_random_transform():
    rng = np.random.default_rng(0)
    drawn = {random_transform(rng) for _ in range(200)}
    assert drawn == set(TRANSFORMS)
    assert random_transform(rng, ["flip_x"]) == "flip_x"
    with pytest.raises(ValueError, match="unknown transform"):
        random_transform(rng, ["spin"])


def test_augment_arrays_errors():
    with pytest.raises(ValueError, match="unknown transform"):
        augment_cell_field(np.zeros((2, 2)), "rot45")
    with pytest.raises(ValueError, match="pairs"):
        augment_arrays({"diff_x": np.zeros((2, 3))}, "rot90")
    with pytest.raises(ValueError, match="2 dimensions"):
        augment_arrays({"a": np.zeros(3)}, "flip_x")
    with pytest.raises(ValueError, match="mask"):
        augment_and_standardize({"a": np.zeros((2, 2))}, "flip_x", Standardizer(), ["a"])


def test_axis_pairs_of_cell_fields_trade_names_on_transposes_only():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 7)), rng.random((5, 7))
    pairs = {"images_wall_x": "images_wall_y", "images_wall_y": "images_wall_x"}
    arrays = {"images_wall_x": a, "images_wall_y": b}
    out = augment_arrays(arrays, "transpose", {}, pairs)
    np.testing.assert_array_equal(out["images_wall_x"], b.T)  # the old y factor now runs along x
    np.testing.assert_array_equal(out["images_wall_y"], a.T)
    out = augment_arrays(arrays, "rot180", {}, pairs)  # two flips: no swap, cell fields do not shift
    np.testing.assert_array_equal(out["images_wall_x"], a[::-1, ::-1])
    out = augment_arrays(arrays, "rot90", {}, pairs)  # one transpose inside: swapped
    np.testing.assert_array_equal(out["images_wall_x"], augment_arrays({"f": b}, "rot90", {})["f"])


@pytest.mark.parametrize("periodic_x", [False, True])
def test_input_channels_of_a_transformed_grid_are_the_transformed_channels(periodic_x):
    """What the training patches do (transform the raw channels) equals what prediction does (compute the channels
    of the transformed grid) for every channel and symmetry — the area ratios change sign on flips along their
    axis (they were not negated before: half the flipped training patches had the wrong sign)."""
    from diffnorm.families import coast_geometry
    from diffnorm.generators import generate_grid
    from diffnorm.transforms.inputs import CELL_AXIS_PAIRS, CHANNELS, FACE_AXIS, ODD_FACE_CHANNELS, raw_channels

    geo, ocean = coast_geometry((30, 44), (-80, -66), 1.0)
    g = generate_grid(geo, ocean, "isotropic", {"min_length": 1.0, "max_length": 3.0}, seed=3, steps=10)
    g = Grid(g.mask, g.area, g.diff_x, g.diff_y, periodic_x, False)
    assert g.shape[0] == g.shape[1]  # square: transposes too
    chans = list(CHANNELS)
    x, ok = raw_channels(g, 10, chans)
    faces = {c: a for c, a in FACE_AXIS.items() if c in chans}
    for t in TRANSFORMS:
        gt = augment_grid(g, t)
        xt, okt = raw_channels(gt, 10, chans)
        out = augment_arrays({c: x[k] for k, c in enumerate(chans)}, t, faces, CELL_AXIS_PAIRS,
                             odd=ODD_FACE_CHANNELS)
        valid = augment_arrays({c: ok[k] for k, c in enumerate(chans)}, t, faces, CELL_AXIS_PAIRS)
        for k, c in enumerate(chans):
            np.testing.assert_array_equal(valid[c], okt[k], err_msg=f"{t} {c} validity")
            np.testing.assert_allclose(out[c][okt[k]], xt[k][okt[k]], rtol=1e-9, atol=1e-12, err_msg=f"{t} {c}")
    # without the sign change the area ratios would not match (the test can fail)
    wrong = augment_arrays({"area_ratio_y": x[chans.index("area_ratio_y")]}, "flip_y", faces)["area_ratio_y"]
    right = raw_channels(augment_grid(g, "flip_y"), 10, ["area_ratio_y"])
    assert not np.allclose(wrong[right[1][0]], right[0][0][right[1][0]])
