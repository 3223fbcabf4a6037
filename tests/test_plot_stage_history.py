"""benchmarks/plot_stage_history.py: the stage table from a model's meta data and measured metrics."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
history = pytest.importorskip("plot_stage_history")

STAGES = [{"steps": 100, "cpu_minutes": 30.0, "filters": 32},
          {"steps": 50, "cpu_minutes": 20.0, "filters": 32},
          {"steps": 40, "cpu_minutes": 60.0, "filters": 64, "training_fields": 300},
          {"steps": 10, "cpu_minutes": 10.0, "filters": 64, "training_fields": 300, "patch_size": [180, 91]}]


def metrics(stages=(1, 2, 3, 4)):
    return pd.DataFrame({"stage": list(stages), "eps_q9999": 0.01, "eps_max": [0.1, 0.05, 0.04, 0.03][:len(stages)],
                         "eps_mean": 1e-3, "source": "hand-made"})


def test_stage_table_accumulates_and_names_changes():
    t = history.stage_table(STAGES, metrics())
    assert t["total_steps"].tolist() == [100, 150, 190, 200]
    assert t["total_minutes"].tolist() == [30.0, 50.0, 110.0, 120.0]
    assert t["change"].tolist() == ["from scratch", "new patches", "64 filters, 300 fields", "full-height patches"]
    assert t["eps_max"].tolist() == [0.1, 0.05, 0.04, 0.03] and "source" not in t


def test_stage_table_names_a_new_draw_of_as_many_fields():
    stages = [{**STAGES[3], "fields_draw": "draw 4"}, {**STAGES[3], "fields_draw": "draw 5"},
              {**STAGES[3], "fields_draw": "draw 5"}]
    t = history.stage_table(stages, metrics((1, 2, 3)))
    assert t["change"].tolist() == ["from scratch", "300 fields, a new draw", "new patches"]


def test_stage_table_refuses_metrics_of_another_model():
    with pytest.raises(ValueError, match=r"missing stages \[4\], unknown stages \[7\]"):
        history.stage_table(STAGES, metrics((1, 2, 3, 7)))


def test_plot_and_markdown(tmp_path):
    t = history.stage_table(STAGES, metrics())
    png = history.plot_stages(t, tmp_path / "img" / "stages.png", "hand-made")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = history.markdown(t).splitlines()
    assert len(lines) == 2 + len(STAGES) and lines[4].startswith("| 3 | 64 filters, 300 fields | 40 | 60 | 110 |")
