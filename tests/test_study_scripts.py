"""The study scripts (benchmarks/fidelity.py, benchmarks/low_latency.py and what they share in
benchmarks/study.py) run end to end at a tiny size, so they do not rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_tiny(script: str, cifar10_dir, tmp_path) -> None:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / script),
            "--tiny",
            f"--data-dir={cifar10_dir}",
            f"--work-dir={tmp_path / 'work'}",
            f"--out-dir={tmp_path / 'docs'}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_fidelity_script_tiny(cifar10_dir, tmp_path):
    run_tiny("fidelity.py", cifar10_dir, tmp_path)
    data = json.loads((tmp_path / "docs" / "results_tiny.json").read_text())
    for src in ("relu", "threshold"):
        r = data["results"][src]
        assert set(r["snn_acc"]) == {"none", "bias", "membrane"}
        assert len(r["snn_acc"]["membrane"]) == 7
        assert len(r["sha256"]) == 64
    doc = (tmp_path / "docs" / "RESULTS_tiny.md").read_text()
    assert "Table 4" in doc and "holds" in doc
    assert (tmp_path / "docs" / "results_tiny_acc_vs_T.png").stat().st_size > 1000


@pytest.mark.slow  # ~2-3 min on 2 cores (four source ANNs, thirteen conversions); CI runs the slow tests too
def test_low_latency_script_tiny(cifar10_dir, tmp_path):
    run_tiny("low_latency.py", cifar10_dir, tmp_path)
    data = json.loads((tmp_path / "docs" / "low_latency_tiny.json").read_text())
    results = data["results"]
    assert {"threshold", "qcfs2", "qcfs4", "qcfs8"} <= set(results["sources"])
    for src in results["sources"].values():
        assert len(src["sha256"]) == 64
    converted = [v for v in results["variants"].values() if "error" not in v]
    assert converted and all(len(v["snn_acc"]) == 7 for v in converted)
    doc = (tmp_path / "docs" / "LOW_LATENCY_tiny.md").read_text()
    assert "Published anchors" in doc and "targets met" in doc
    assert (tmp_path / "docs" / "low_latency_tiny_acc_vs_T.png").stat().st_size > 1000
