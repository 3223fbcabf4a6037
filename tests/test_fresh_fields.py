"""benchmarks/fresh_fields.py: fields planned here and computed where the training runs, without Dask or NetCDF."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffnorm.generation import load_manifest, sample_seed
from tests.conftest import PACKED_DATA, make_tiny_dataset, make_tiny_global_dataset

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
fresh_fields = pytest.importorskip("fresh_fields")
pack_fields = pytest.importorskip("pack_fields")
train_packed = pytest.importorskip("train_packed")

DATA = PACKED_DATA


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fresh")
    make_tiny_dataset(tmp / "coast", seed=3, splits={"train": 2, "val": 1, "test": 2})
    make_tiny_global_dataset(tmp / "globe", seed=5, splits={"train": 2, "val": 0})
    config = tmp / "fields.yaml"
    config.write_text(yaml.safe_dump({"data": {"data_dirs": [str(tmp / "coast"), str(tmp / "globe")],
                                               "val_dirs": [str(tmp / "coast")]}}))
    return tmp, config


def load_pack(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(bytes(z["index"]).decode()), {k: z[k] for k in z.files if k != "index"}


def test_offset_zero_reproduces_the_data_sets_as_pack_fields_packs_them(sets):
    """The same fields, to the last float32 bit, as packing the stored files: the plan's grids (coordinates, masks
    of two families) and compute_sample travel exactly."""
    tmp, config = sets
    plan = fresh_fields.make_plan([str(config)], tmp / "plan0.npz", seed_offset=0)
    assert [e["count"] for e in plan["entries"]] == [2, 2, 1] and len(plan["geometries"]) == 2
    index = fresh_fields.generate(tmp / "plan0.npz", tmp / "fresh0.npz", workers=1, progress=False)
    pack_fields.pack(str(config), str(tmp / "ref.npz"))
    ref_index, ref = load_pack(tmp / "ref.npz")
    new_index, new = load_pack(tmp / "fresh0.npz")
    assert new_index == index and not (tmp / "fresh0.npz.parts").exists()
    for split in ("train", "val"):
        assert len(new_index[split]) == len(ref_index[split])
        for a, b in zip(ref_index[split], new_index[split], strict=True):
            for name in ("diff_x", "diff_y", "gamma"):
                np.testing.assert_array_equal(new[f"{b['key']}_{name}"], ref[f"{a['key']}_{name}"])
            for name in ("mask", "area"):
                np.testing.assert_array_equal(new[f"{b['grid']}_{name}"], ref[f"{a['grid']}_{name}"])
            assert (a["steps"], a["periodic_x"], a["periodic_y"]) == (b["steps"], b["periodic_x"], b["periodic_y"])
    assert [e["periodic_x"] for e in new_index["train"]] == [False, False, True, True]  # coast box, then globe


def test_a_new_draw_shifts_the_training_seeds_and_keeps_validation_and_test(sets):
    tmp, config = sets
    plan = fresh_fields.make_plan([str(config)], tmp / "plan.npz", seed_offset=1000, scale=1.5,
                                  test_dirs=[str(tmp / "coast")])
    assert [(e["role"], e["count"]) for e in plan["entries"]] == [("train", 3), ("train", 3), ("val", 1), ("test", 2)]
    index = fresh_fields.generate(tmp / "plan.npz", tmp / "fresh.npz", workers=1, progress=False)
    _, old = load_pack(tmp / "fresh0.npz")
    _, new = load_pack(tmp / "fresh.npz")
    coast_seed = load_manifest(tmp / "coast")["seed"]
    assert [e["seed"] for e in index["train"][:3]] == [sample_seed(coast_seed + 1000, "train", i) for i in range(3)]
    assert [e["seed"] for e in index["test"]] == [sample_seed(coast_seed, "test", i) for i in range(2)]
    assert not np.array_equal(new["train0_diff_x"], old["train0_diff_x"])  # another draw
    np.testing.assert_array_equal(new["val0_gamma"], old["val0_gamma"])     # the same validation field


def test_generation_resumes_from_the_fields_already_computed(sets, monkeypatch):
    tmp, _ = sets
    fresh_fields._init_worker(str(tmp / "plan.npz"))
    parts = tmp / "resume.npz.parts"
    parts.mkdir()
    for task in fresh_fields.tasks(fresh_fields.load_plan(tmp / "plan.npz")[0])[:4]:
        fresh_fields.compute_part(task, str(parts))
    (parts / "e0000_s000009.npz.tmp123.npz").write_bytes(b"half a file")  # what a killed write leaves
    computed = []
    real = fresh_fields.compute_part
    monkeypatch.setattr(fresh_fields, "compute_part", lambda t, p: computed.append(t) or real(t, p))
    fresh_fields.generate(tmp / "plan.npz", tmp / "resume.npz", workers=1, progress=False)
    assert computed == [(1, 1), (1, 2), (2, 0), (3, 0), (3, 1)]  # 9 fields, 4 there
    a, b = load_pack(tmp / "resume.npz")[1], load_pack(tmp / "fresh.npz")[1]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    computed.clear()
    fresh_fields.generate(tmp / "plan.npz", tmp / "resume.npz", workers=1, progress=False)
    assert computed == []  # the pack of this plan is there: nothing is computed again


def test_two_worker_processes_give_the_same_pack(sets):
    tmp, _ = sets
    fresh_fields.generate(tmp / "plan.npz", tmp / "two.npz", workers=2, progress=False)
    a, b = load_pack(tmp / "two.npz")[1], load_pack(tmp / "fresh.npz")[1]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_a_validation_field_that_comes_out_different_is_an_error_naming_it(sets):
    tmp, _ = sets
    with np.load(tmp / "plan.npz") as z:
        arrays = {k: z[k] for k in z.files}
    plan = json.loads(bytes(arrays["plan"]).decode())
    plan["entries"][2]["checks"][0] *= 1.001
    arrays["plan"] = np.frombuffer(json.dumps(plan).encode(), np.uint8)
    np.savez(tmp / "bad.npz", **arrays)
    with pytest.raises(fresh_fields.PlanError, match=r"coast val field 0: .*relative 1\.0e-03.*not the same field"):
        fresh_fields.generate(tmp / "bad.npz", tmp / "bad-pack.npz", workers=1, progress=False)
    assert len(list((tmp / "bad-pack.npz.parts").glob("*.npz"))) == 9 and not (tmp / "bad-pack.npz").exists()


def test_bad_plans_and_inputs_are_named(sets, tmp_path):
    tmp, config = sets
    with pytest.raises(fresh_fields.PlanError, match="no validation data set"):
        fresh_fields.make_plan([str(tmp / "coast")], tmp_path / "p.npz", seed_offset=1)
    with pytest.raises(fresh_fields.PlanError, match="globe has no val samples"):
        fresh_fields.make_plan([str(config)], tmp_path / "p.npz", 1, val_dirs=[str(tmp / "globe")])
    with pytest.raises(fresh_fields.PlanError, match="nowhere"):
        fresh_fields.make_plan([str(tmp_path / "nowhere")], tmp_path / "p.npz", 1, val_dirs=[str(tmp / "coast")])
    with pytest.raises(fresh_fields.PlanError, match="scale must be > 0"):
        fresh_fields.make_plan([str(config)], tmp_path / "p.npz", 1, scale=0)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(fresh_fields.PlanError, match="cannot read the plan"):
        fresh_fields.load_plan(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "other.npz", plan=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(fresh_fields.PlanError, match="not a diffnorm-fresh-plan/1 file"):
        fresh_fields.load_plan(tmp_path / "other.npz")
    assert not list(tmp_path.glob("p.npz*"))  # nothing half-written


def test_generation_needs_neither_dask_nor_netcdf_nor_the_land_mask(sets, tmp_path):
    """What a GPU image without them runs: the import of each is made to fail in a fresh interpreter."""
    tmp, _ = sets
    code = ("import sys\n"
            "for m in ('dask', 'distributed', 'netCDF4', 'h5netcdf', 'global_land_mask', 'jsonargparse'):\n"
            "    sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
            "import fresh_fields\n"
            f"fresh_fields.main(['generate', {str(tmp / 'plan0.npz')!r}, '-o', {str(tmp_path / 'p.npz')!r},"
            " '--workers', '1'])\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "5 fields computed (0 already there)" in run.stdout
    a, b = load_pack(tmp_path / "p.npz")[1], load_pack(tmp / "fresh0.npz")[1]
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in b)


def test_train_packed_reads_a_generated_pack(sets):
    tmp, _ = sets
    dm = train_packed.PackedDataModule(str(tmp / "fresh.npz"), data_dirs=["packed"], **DATA)
    dm.setup("fit")
    assert [len(dm.fields[s]) for s in ("train", "val")] == [6, 1]
    assert [f.periodic_x for f in dm.fields["train"]] == [False] * 3 + [True] * 3


def test_the_gpu_stage_config_starts_as_the_shipped_model_grown_to_128_filters():
    """configs/gpu-stage.yaml (benchmarks/gpu_stage.sh) grows sphere-1deg's weights: the same function at step 0."""
    import torch

    from diffnorm.pretrained import load_model
    from diffnorm.trainers import NormalizationTask

    cfg = yaml.safe_load((ROOT / "configs" / "gpu-stage.yaml").read_text())
    task = NormalizationTask(channels=cfg["data"]["channels"], target=cfg["data"]["target"], **cfg["model"])
    shipped, _ = load_model("sphere-1deg")
    assert task.model.input_layer.conv.out_channels == 128 and len(task.model.blocks) == len(shipped.blocks) == 6
    task.model.periodic_x, task.model.periodic_y = shipped.periodic_x, shipped.periodic_y  # as setup() sets them
    x = torch.randn(1, 6, 24, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(task.model.eval()(x), shipped(x), rtol=1e-4, atol=1e-5)


def test_the_gpu_stage_script_runs_end_to_end_on_the_cpu(sets, tmp_path):
    """benchmarks/gpu_stage.sh, the one command a lent GPU gets, with its real config shrunk by OVERRIDE: plan ->
    fields -> training -> a slim model file and the logs in OUT, which diffnorm loads (a dry run of its plumbing)."""
    tmp, config = sets
    fresh_fields.make_plan([str(config)], tmp_path / "plan.npz", seed_offset=3000)
    override = {"model": {"init_weights": None, "model_kwargs": {"blocks": 1, "dilations": None}},
                "trainer": {"max_steps": 2, "accelerator": "cpu", "benchmark": False},
                "data": {**DATA, "num_workers": 0, "patches_on_device": False}}
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "PLAN": str(tmp_path / "plan.npz"),
           "FILTERS": "4", "WORKERS": "1", "REPEAT": "0", "MAX_TIME": "00:00:05:00", "PYTHON": sys.executable,
           "OVERRIDE": json.dumps(override)}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_stage.sh")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"generate.log", "train.log", "last.pt", "last.json", "metrics.csv",
                                            "summary.json"}  # at most 8 files come back from a device run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["config"]["model"]["model_kwargs"]["filters"] == 4
    from diffnorm.pretrained import load_model

    model, meta = load_model(out / "last.pt")
    assert model.input_layer.conv.out_channels == 4 and meta["channels"] == DATA["channels"]
