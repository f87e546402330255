"""The reproduce and benchmark scripts run end to end (tiny settings; the real numbers are in the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]


def test_reproduce_table1_writes_a_table_beside_the_papers(tiny_mnist_root, tmp_path):
    out = tmp_path / "table1"
    command = [sys.executable, str(REPO / "scripts" / "reproduce_table1.py"), "--datasets", "mnist", "--seeds", "1", "2",
               "--epochs", "1", "--data-root", str(tiny_mnist_root), "--out", str(out), "--", "debug=fast",
               *[o for o in tiny_data_overrides(tiny_mnist_root) if not o.startswith("data.root")]]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "table1.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| mnist_paper"))
    lls = [json.loads((out / "mnist" / f"seed{s}" / "metrics.json").read_text())["test/parzen_ll"] for s in (1, 2)]
    assert f"seed 1: {lls[0]:.1f}" in row and f"seed 2: {lls[1]:.1f}" in row and "225 +- 2" in row
    # a second call reuses the finished runs instead of training again
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "gan.train" not in again.stdout


def test_bench_train_prints_the_framework_to_bare_ratio(tiny_mnist_root, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--steps", "3", "--warmup", "1", "--repeats", "1",
               "--device", "cpu", "--data-root", str(tiny_mnist_root), "data.verify=false", "data.val_size=200"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["framework_steps_per_s"] > 0 and summary["bare_steps_per_s"] > 0
    assert abs(summary["ratio_median"] - summary["framework_steps_per_s"] / summary["bare_steps_per_s"]) < 1e-9
