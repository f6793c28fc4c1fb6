"""A trained CIFAR-10 network exported to NIR runs in sinabs and snnTorch as it runs here (slow).

Each simulator imports the file with its own importer, as its users would, then gets the
user-side settings docs/EXPORT.md lists (benchmarks/nir_targets.py); on real CIFAR-10 test images
its predictions must match ours, image by image. Skipped where nir, sinabs or snnTorch is not
installed (``pip install -e ".[nir]" sinabs==3.1.3 snntorch==1.0.0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.simulation import simulate

nir = pytest.importorskip("nir")
from lightning_snn.export import export_nir, import_nir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import nir_targets  # noqa: E402

pytestmark = pytest.mark.slow
T = 32


@pytest.fixture(scope="module")
def exported(trained_vgg, cifar_batches):
    (train_x, _), (test_x, test_y) = cifar_batches
    snn = convert(trained_vgg, calibrate_thresholds(trained_vgg, [train_x[:1024]]), shift="membrane")
    return snn, test_x[:128], test_y[:128]


@pytest.mark.parametrize("simulator", ["sinabs", "snntorch"])
def test_the_simulator_predicts_like_us_with_the_documented_settings(simulator, exported, tmp_path):
    pytest.importorskip(simulator)
    snn, x, y = exported
    path = str(export_nir(snn, tmp_path / "snn.nir", tuple(x.shape[1:]), T, **nir_targets.EXPORT_OPTIONS[simulator]))
    ours = simulate(import_nir(path, restore=False), x, [T])[0].argmax(-1)  # the file's network, simulated here
    assert float((ours == y).float().mean()) > 0.3  # a trained network, not chance (10%)
    fixes = frozenset(nir_targets.FIXES[simulator])
    theirs = torch.cat([nir_targets.RUNNERS[simulator](path, part, T, fixes) for part in x.split(64)])
    assert float((theirs == ours).float().mean()) >= 0.99


def test_the_round_trip_predicts_identically_on_real_images(exported, tmp_path):
    snn, x, _ = exported
    back = import_nir(export_nir(snn, tmp_path / "snn.nir", tuple(x.shape[1:]), T))
    assert torch.equal(simulate(back, x, [T])[0].argmax(-1), simulate(snn, x, [T])[0].argmax(-1))


def test_the_cli_writes_snn_nir_that_reproduces_its_own_results(cifar10_dir, tmp_path):
    from tests.test_cli import REPO, results_files, run_cli, tiny_args

    cfg = str(REPO / "configs" / "quickstart.yaml")
    args = [*tiny_args(cifar10_dir, tmp_path, timesteps="[16]"), "--trainer.max_epochs=1"]
    run_cli(["fit", "-c", cfg, *args, "--snn.export=nir", "--snn.export_timesteps=16"], cwd=tmp_path)
    (results_json,) = results_files(tmp_path)
    results = json.loads(results_json.read_text())
    back = import_nir(results_json.with_name("snn.nir"))
    from lightning_snn.data import CIFAR10DataModule

    dm = CIFAR10DataModule(str(cifar10_dir), download=False, num_workers=0)
    dm.setup("test")
    x = torch.stack([dm.test_set[i][0] for i in range(results["num_test_images"])])
    y = torch.stack([torch.as_tensor(dm.test_set[i][1]) for i in range(results["num_test_images"])])
    correct = int((simulate(back, x, [16])[0].argmax(-1) == y).sum())
    assert correct == results["snn_correct"]["16"]  # the file is the SNN the run measured

    # the study script on the run's checkpoint: every installed simulator, as imported and with its settings
    from tests.test_benchmarks import BENCH, REPO, run_script

    (ckpt,) = [p for p in tmp_path.rglob("last.ckpt")]
    out = tmp_path / "export.json"
    targets = ["ours", *[t for t in ("sinabs", "snntorch") if nir_targets.available(t)]]
    check = [sys.executable, str(BENCH / "nir_check.py"), "--checkpoint", str(ckpt), "--data-dir", str(cifar10_dir)]
    settings = "--test-samples 32 --calibration-samples 128 --batch-size 32 --fix-sets all".split()
    run_script(
        [*check, "--timesteps", "16", *settings]
        + ["--targets", *targets, "--out", str(out), "--cli-nir", str(results_json.with_name("snn.nir"))],
        timeout=600,
    )
    written = out.read_text()
    study = json.loads(written)
    assert all(row["command"].startswith("python benchmarks/nir_check.py ") for row in study["targets"].values())
    # adding a target measured at another T to the same file is refused before any work; the file is kept
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    other_t = [*check, "--timesteps", "8", *settings, "--targets", "ours", "--out", str(out)]
    proc = subprocess.run(other_t, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "holds targets measured with" in proc.stderr
    assert out.read_text() == written
    assert study["targets"]["ours"]["round_trip"]["agreement"] == 100.0
    assert study["targets"]["ours"]["file_network"]["agreement_with_convert_bias_T"] == 100.0
    for name in targets[1:]:
        runs = study["targets"][name]["runs"]
        assert runs[-1]["fixes"] == list(nir_targets.FIXES[name]) and runs[-1]["agreement_with_file_network"] >= 99
