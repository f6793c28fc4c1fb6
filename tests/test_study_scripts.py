"""benchmarks/fidelity.py runs end to end at a tiny size (so it does not rot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_fidelity_script_tiny(cifar10_dir, tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "fidelity.py"),
            "--tiny",
            f"--data-dir={cifar10_dir}",
            f"--work-dir={tmp_path / 'work'}",
            f"--out-dir={tmp_path / 'docs'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((tmp_path / "docs" / "results_tiny.json").read_text())
    for src in ("relu", "threshold"):
        r = data["results"][src]
        assert set(r["snn_acc"]) == {"none", "bias", "membrane"}
        assert len(r["snn_acc"]["membrane"]) == 7
        assert len(r["sha256"]) == 64
    doc = (tmp_path / "docs" / "RESULTS_tiny.md").read_text()
    assert "Table 4" in doc and "holds" in doc
    assert (tmp_path / "docs" / "results_tiny_acc_vs_T.png").stat().st_size > 1000
