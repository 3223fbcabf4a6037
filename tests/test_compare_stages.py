"""benchmarks/compare_stages.py: group means, the shipping rule and paired per-field ratios, on hand-made results."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
compare_stages = pytest.importorskip("compare_stages")

SETS = {"te-a": 3, "te-b": 2, "ood-x": 2, "ho-y": 1}  # 5 test, 2 stress, 1 held-out fields


def results(scale: dict[str, float], seed: int = 0, with_fields: bool = True) -> dict:
    """A bench_cnn_sphere.py-like results file: random metrics per field, multiplied by ``scale[set]``."""
    rng = np.random.default_rng(seed)
    fields = []
    for s, n in SETS.items():
        for i in range(n):
            m = {k: float(rng.uniform(1, 2)) * scale.get(s, 1.0) * v
                 for k, v in (("q9999", 1e-2), ("max", 2e-2), ("mean", 1e-3), ("rmse", 2e-3))}
            fields.append({"set": s, "index": i, "path": f"{s}/{i}", "cnn": m, "cnn, no TTA": m})
    per_dir = {s: {"cnn": {k: float(np.mean([f["cnn"][k] for f in fields if f["set"] == s]))
                           for k in ("q9999", "max", "mean")}} for s in SETS}
    out = {"model": f"m{seed}", "results": {}, "per_dir": per_dir}
    if with_fields:
        out["fields"] = fields
    return out


def test_group_means_are_the_field_means_and_the_rule_counts_what_fell():
    base = results({})
    # the same fields, the test set 10 % lower, stress 5 % higher, held-out unchanged (does not fall)
    new = json.loads(json.dumps(base))
    for f in new["fields"]:
        factor = {"te-a": 0.9, "te-b": 0.9, "ood-x": 1.05, "ho-y": 1.0}[f["set"]]
        f["cnn"] = {k: v * factor for k, v in f["cnn"].items()}
    r = compare_stages.compare([base], [new], need=3)
    by = {(x["group"], x["metric"]): x for x in r["rows"]}
    assert [x["group"] for x in r["rows"]] == ["test"] * 3 + ["stress"] * 3 + ["held-out"] * 3
    test_max = np.mean([f["cnn"]["max"] for f in base["fields"] if f["set"].startswith("te-")])
    assert by[("test", "max")]["base"] == pytest.approx(test_max) and by[("test", "max")]["fields"] == 5
    assert by[("test", "mean")]["change"] == pytest.approx(-0.1)
    assert by[("stress", "q9999")]["change"] == pytest.approx(0.05)
    assert r["fell"] == 3 and r["of"] == 9 and r["ship"] is True  # need 3
    assert compare_stages.compare([base], [new])["ship"] is False  # the default rule: 7 of 9
    p = by[("test", "max")]["paired"]
    assert p["ratio"] == pytest.approx(0.9) and p["lower"] == 5 and p["n"] == 5
    assert p["se"] == pytest.approx(0, abs=1e-12)


def test_paired_ratio_is_the_geometric_mean_with_its_standard_error():
    base = results({}, seed=1)
    new = json.loads(json.dumps(base))
    factors = iter([0.8, 1.25, 0.5, 1.0, 2.0, 0.9, 1.1, 1.0])
    for f in new["fields"]:
        f["cnn"] = {**f["cnn"], "max": f["cnn"]["max"] * next(factors)}
    p = compare_stages.compare([base], [new])["rows"]
    t = next(x for x in p if x["group"] == "test" and x["metric"] == "max")["paired"]
    logs = np.log([0.8, 1.25, 0.5, 1.0, 2.0])
    assert t["ratio"] == pytest.approx(np.exp(logs.mean()))
    assert t["se"] == pytest.approx(logs.std(ddof=1) / np.sqrt(5))
    assert t["lower"] == 2  # 0.8 and 0.5; 1.0 did not fall


def test_results_without_field_records_are_weighted_by_the_other_sides_counts():
    base = results({}, seed=2)
    new = results({"te-a": 0.5}, seed=3, with_fields=False)
    r = compare_stages.compare([base], [new])
    t = next(x for x in r["rows"] if x["group"] == "test" and x["metric"] == "mean")
    # te-a has 3 fields and te-b 2: the per-set means weighted 3:2
    expect = (3 * new["per_dir"]["te-a"]["cnn"]["mean"] + 2 * new["per_dir"]["te-b"]["cnn"]["mean"]) / 5
    assert t["new"] == pytest.approx(expect) and "paired" not in t
    with pytest.raises(ValueError, match="neither side has per-field records"):
        compare_stages.compare([results({}, with_fields=False)], [new])


def test_different_fields_or_rows_are_refused(tmp_path):
    base = results({})
    fewer = json.loads(json.dumps(base))
    fewer["fields"] = [f for f in fewer["fields"] if f["path"] != "te-a/2"]
    with pytest.raises(ValueError, match="group test: 5 fields against 4"):
        compare_stages.compare([base], [fewer])
    renamed = json.loads(json.dumps(base))
    renamed["fields"][0]["index"] = 7  # as many fields, one of them another
    with pytest.raises(ValueError, match=r"field te-a\[(0|7)\] is on one side only"):
        compare_stages.compare([base], [renamed])
    with pytest.raises(ValueError, match="no row 'bogus'"):
        compare_stages.compare([base], [base], row="bogus")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"steps": 3}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base))
    for path, message in ((bad, "not a JSON file"), (foreign, "no 'per_dir'"), (tmp_path / "none.json", "no such")):
        cmd = [sys.executable, str(BENCH / "compare_stages.py"), "--base", str(good), "--new", str(path)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 2 and message in run.stderr


def test_the_command_writes_the_table(tmp_path):
    base, new = tmp_path / "b.json", tmp_path / "n.json"
    base.write_text(json.dumps(results({}, seed=4)))
    new.write_text(json.dumps(results({s: 0.5 for s in SETS}, seed=4)))  # every field halved
    out = tmp_path / "c.md"
    run = subprocess.run([sys.executable, str(BENCH / "compare_stages.py"), "--base", str(base), "--new", str(new),
                          "-o", str(out)], capture_output=True, text=True, check=True)
    text = out.read_text()
    assert text == run.stdout
    assert "9 of 9 group metrics fell (rule: at least 7): **ship**" in text
    assert "| test | 5 | ε_max |" in text and "-50.0 %" in text and "0.500 ± 0.000 | 5/5" in text


def tiny_model(data: Path, out: Path, seed: int = 0) -> Path:
    """A 4-filter network trained for one epoch on ``data``, exported as a model file."""
    import lightning as L

    from diffnorm.datamodules import NormalizationDataModule
    from diffnorm.pretrained import export_checkpoint
    from diffnorm.trainers import NormalizationTask
    from diffnorm.trainers.cli import LatestCheckpoint

    channels = ["mask", "distance", "sf_diff_x", "sf_diff_y", "analytic_sf"]
    L.seed_everything(seed)
    dm = NormalizationDataModule(str(data), channels=channels, target="log_ratio_images", patch_size=8,
                                 samples_per_epoch=4, batch_size=4)
    task = NormalizationTask("cnn", {"filters": 4, "blocks": 1, "skip": "v2"}, channels=channels,
                             target="log_ratio_images")
    last = LatestCheckpoint(dirpath=str(out / "run"))
    L.Trainer(max_epochs=1, logger=False, callbacks=[last], accelerator="cpu", enable_progress_bar=False,
              enable_model_summary=False).fit(task, dm)
    return export_checkpoint(out / "run" / "last.ckpt", out / "m.pt")


def test_bench_cnn_sphere_stores_each_field_and_a_model_ties_with_itself(tmp_path):
    """End to end on a tiny data set: bench_cnn_sphere.py's JSON carries each test field's metrics (their mean is
    the table's), and compare_stages.py pairs a model with itself: every ratio 1, nothing fell."""
    from tests.conftest import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "te-tiny", splits={"train": 2, "val": 1, "test": 2})
    model = tiny_model(data, tmp_path)
    out = tmp_path / "r.md"
    subprocess.run([sys.executable, str(BENCH / "bench_cnn_sphere.py"), "--model", str(model), "--test-dirs",
                    str(data), "--randomized-fields", "0", "--tta", "flips", "-o", str(out)],
                   capture_output=True, text=True, check=True)
    res = json.loads(out.with_suffix(".json").read_text())
    assert [(f["set"], f["index"]) for f in res["fields"]] == [("te-tiny", 0), ("te-tiny", 1)]
    for row in ("cnn", "cnn, no TTA"):
        assert np.mean([f[row]["max"] for f in res["fields"]]) == pytest.approx(res["results"][row]["max"])
    r = compare_stages.compare([res], [res])
    assert r["fell"] == 0 and r["of"] == 3 and r["ship"] is None  # one group: fewer metrics than the rule counts
    assert all(x["paired"]["ratio"] == 1.0 and x["paired"]["lower"] == 0 for x in r["rows"])


def test_evaluate_stage_script_runs_base_and_candidate_and_compares(tmp_path):
    """benchmarks/evaluate_stage.sh on tiny validation, test, stress and held-out sets: the base's tables are made
    once, the candidate's beside them (randomized from the base's cache), and both comparisons written."""
    import os

    from tests.conftest import make_tiny_dataset

    sets = {n: make_tiny_dataset(tmp_path / n, seed=k, splits={"train": 2, "val": 1, "test": 1})
            for k, n in enumerate(("va-a", "te-a", "ood-a", "ho-a"))}
    base, cand = tiny_model(sets["te-a"], tmp_path / "b", 0), tiny_model(sets["te-a"], tmp_path / "c", 1)
    res = tmp_path / "results"
    env = {**os.environ, "PYTHON": sys.executable, "RESULTS": str(res), "BASE": "base", "BASE_MODEL": str(base),
           "VAL_DIRS": str(sets["va-a"]), "TEST_DIRS": str(sets["te-a"]), "RANDOMIZED": "1",
           "ROBUSTNESS_DIRS": f"{sets['ood-a']} {sets['ho-a']}"}
    script = str(BENCH / "evaluate_stage.sh")
    run = subprocess.run(["bash", script, str(cand), "cand"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("base", "cand"):
        for part in ("val", "test", "robustness"):
            assert (res / f"{name}-{part}.json").exists()
    assert json.loads((res / "cand-test.json").read_text())["results"]["randomized"]["fields"] == 1
    assert run.stdout.count("on the test fields (the base, once)") == 1
    text = (res / "cand-compare.md").read_text()
    assert "| test | 1 |" in text and "| stress | 1 |" in text and "| held-out | 1 |" in text
    assert "of 9 group metrics fell (rule: at least 7)" in text
    assert "| validation | 1 |" in (res / "cand-val-compare.md").read_text()
    # a second run reuses the base's tables and the randomized cache
    again = subprocess.run(["bash", script, str(cand), "cand"], env=env, capture_output=True, text=True, check=True)
    assert "(the base, once)" not in again.stdout, [x for x in again.stdout.splitlines() if x.startswith("==")]
    assert f"randomized {sets['te-a']}" not in again.stdout
    wrong = subprocess.run(["bash", script, str(cand)], env=env, capture_output=True, text=True)
    assert wrong.returncode == 2 and "usage" in wrong.stderr
    missing = subprocess.run(["bash", script, str(cand), "x"], env={**env, "TEST_DIRS": str(tmp_path / "none")},
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "none is missing" in missing.stderr
