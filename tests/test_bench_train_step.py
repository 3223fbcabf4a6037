"""benchmarks/bench_train_step.py: the step-time benchmark runs every variant and reports each."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_step_times_every_variant():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train_step.py"), "--filters", "4",
                          "--patch", "72", "--batch", "1", "--repeats", "2", "--warmup", "1", "--no-compile",
                          "--threads", "1", "--precision", "32", "bf16"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    rows = re.findall(r"^\| (4 filters[^|]*) \| ([\d.]+) \| ([\d.]+) \|$", out, flags=re.M)
    assert [r[0] for r in rows] == ["4 filters, 32", "4 filters, bf16, output layer straight",
                                    "4 filters, bf16, output layer float32", "4 filters, bf16, output layer bf16"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)
