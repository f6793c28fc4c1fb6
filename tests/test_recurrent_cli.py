"""The recurrent configs through the command line (appendix A.4 on SST-5)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO
from tests.test_cli import results_files, run_cli
from tests.test_text_data import SST_DIR

SST_CONFIGS = REPO / "configs" / "sst"
pytestmark = pytest.mark.skipif(not (SST_DIR / "train.txt").is_file(), reason="no SST-5 files at ../shared/data/sst")


def build(name: str, *extra: str, tmp_path):
    from lightning_snn.cli import main

    return main(["-c", str(SST_CONFIGS / name), f"--trainer.logger.init_args.save_dir={tmp_path}", *extra], run=False)


def test_the_paper_comparison_shares_sizes_data_and_budget(tmp_path):
    """RNN -> SNN, ReLU-RNN -> SNN and the surrogate-trained SNN: same layers, epochs, optimizer, data."""
    clis = {name: build(f"{name}.yaml", tmp_path=tmp_path) for name in ("rnn_t", "rnn_relu", "spiking_rnn")}
    arch = {n: (c.model.hparams.arch, c.model.hparams.activation) for n, c in clis.items()}
    assert arch["rnn_t"] == ("rnn", "threshold_relu") and arch["rnn_relu"] == ("rnn", "relu")
    assert arch["spiking_rnn"] == ("spiking_rnn", "relu")
    shapes = {n: {k: tuple(v.shape) for k, v in c.model.model.named_parameters()} for n, c in clis.items()}
    assert shapes["rnn_t"] == shapes["rnn_relu"]
    assert sorted(shapes["rnn_t"].values()) == sorted(shapes["spiking_rnn"].values())  # the same parameters
    for c in clis.values():
        assert c.trainer.max_epochs == clis["rnn_t"].trainer.max_epochs
        assert c.config.model.optimizer == clis["rnn_t"].config.model.optimizer
        assert c.config.model.lr_scheduler == clis["rnn_t"].config.model.lr_scheduler
        assert c.config.data == clis["rnn_t"].config.data
        assert c.model.hparams.vocab_size == c.datamodule.vocab_size  # linked from the training vocabulary
    snn = clis["spiking_rnn"].config.snn
    assert clis["spiking_rnn"].model.model.rnn.steps_per_word in snn.timesteps


def test_a_setting_the_recurrent_snn_does_not_apply_stops_before_training(tmp_path):
    from lightning_snn.cli import main

    args = ["fit", "-c", str(SST_CONFIGS / "rnn_t.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    with pytest.raises(ValueError, match="bias shift"):
        main([*args, f"--trainer.default_root_dir={tmp_path}", "--snn.shift=bias", "--trainer.max_epochs=50"])
    wandb = sys.modules.get("wandb")  # the failed run's W&B run is closed: the next run is a new one
    assert wandb is None or wandb.run is None


def test_nir_export_of_a_recurrent_snn_is_refused_before_training(tmp_path):
    """The NIR exporter writes image SNNs only: a recurrent model with snn.export stops in setup."""
    pytest.importorskip("nir")
    from lightning_snn.cli import main

    args = ["fit", "-c", str(SST_CONFIGS / "rnn_t.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    with pytest.raises(ValueError, match="image models only"):
        main([*args, f"--trainer.default_root_dir={tmp_path}", "--snn.export=nir", "--snn.export_timesteps=4"])


def tiny(tmp_path) -> list[str]:
    return [
        f"--data.init_args.data_dir={SST_DIR}",
        "--data.init_args.train_samples=256",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--model.model_kwargs.hidden_size=32",
        "--model.model_kwargs.embed_dim=16",
        "--snn.timesteps=[1,4]",
        "--snn.output_loops=[1,4]",
        "--snn.calibration_samples=128",
        "--snn.max_test_samples=64",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["rnn_t.yaml", "spiking_rnn.yaml"])
def test_fit_then_test_gives_identical_numbers(config, tmp_path):
    cfg = str(SST_CONFIGS / config)
    fit_args = ["fit", "-c", cfg, *tiny(tmp_path), "--trainer.max_epochs=2", "--model.relu_warmup_epochs=0"]
    if config == "spiking_rnn.yaml":
        fit_args.append("--model.model_kwargs.steps_per_word=2")
    run_cli(fit_args, cwd=tmp_path, OMP_NUM_THREADS="1")
    (fit_json,) = results_files(tmp_path)
    fit = json.loads(fit_json.read_text())
    assert fit["stage"] == "fit" and fit["num_test_images"] == 64 and fit["calibration_images"] == 128
    assert set(fit["snn_acc"]) == {"1", "4"} and fit["recurrent"]["output_loops"] == [1, 4]
    assert fit["recurrent"]["source"] == ("rnn" if config == "rnn_t.yaml" else "spiking_rnn")
    assert (fit_json.parent / "snn_report.png").is_file()
    ckpt = sorted(tmp_path.rglob("last.ckpt"))[-1]
    test_args = ["test", "-c", cfg, *tiny(tmp_path), f"--ckpt_path={ckpt}"]
    if config == "spiking_rnn.yaml":
        test_args.append("--model.model_kwargs.steps_per_word=2")
    run_cli(test_args, cwd=tmp_path, OMP_NUM_THREADS="1")
    test = json.loads(results_files(tmp_path)[-1].read_text())
    assert test["stage"] == "test"
    for key in ("ann_acc", "snn_acc", "thresholds", "output_threshold", "recurrent"):
        assert test[key] == fit[key], key


@pytest.mark.slow
def test_study_scripts_run_tiny(tmp_path):
    """benchmarks/rnn_study.py (one tiny run + the summary) and rnn_error_sources.py, so they do not rot."""
    import subprocess
    import sys

    out = tmp_path / "study.json"
    tiny_sets = [
        "data.init_args.train_samples=256",
        "model.model_kwargs.hidden_size=16",
        "model.model_kwargs.embed_dim=8",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=2",
        "snn.timesteps=[1,2]",
        "snn.output_loops=[1,2]",
        "snn.calibration_samples=64",
        "snn.max_test_samples=64",
    ]
    study = [sys.executable, str(REPO / "benchmarks" / "rnn_study.py"), f"--out={out}", f"--root={tmp_path / 'runs'}"]
    sets = [a for s in tiny_sets for a in ("--set", s)]
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    for seed in (0, 1):
        proc = subprocess.run(
            [*study, "--config=rnn_t", f"--seeds={seed}", *sets], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    runs = data["runs"]["rnn_t"]
    assert set(runs) == {"0", "1"}
    for run in runs.values():
        assert set(run["test"]["spiking_acc"]) == {"1", "2"} and set(run["dev"]["spiking_acc"]["2"]) == {"1", "2"}
        assert run["wall_s"] > 0 and run["cpu_s"] > 0
    proc = subprocess.run([*study, "--summary"], env=env, capture_output=True, text=True)  # docs/RNN.md's tables
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| ours, test (sentences) |" in proc.stdout and "±" in proc.stdout and out.with_suffix(".png").is_file()
    from tests.test_study_scripts import render_page

    doc = render_page("RNN.md", tmp_path / "RNN.md", rnn_study__json=out)  # docs/RNN.md from the tiny JSON
    acc = runs["0"]["test"]["spiking_acc"]["2"]["2"], runs["1"]["test"]["spiking_acc"]["2"]["2"]
    assert "| 2 | " in doc and f"{sum(acc) / 2:.2f} ± " in doc  # the K = 2, L = 2 cell: mean over the 2 seeds
    assert doc.count("not run") >= 4 and "54.30" in doc  # spiking_rnn, rnn_relu not run; the paper's row
    assert (tmp_path / "rnn_study.png").stat().st_size > 1000
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    errors = tmp_path / "errors.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "rnn_error_sources.py"),
            str(ckpt),
            f"--config={REPO / runs['0']['run_config']}",
            "--steps",
            "1",
            "4",
            f"--out={errors}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_k = json.loads(errors.read_text())["per_k"]
    # the quantiser's own error falls with K (the SNN's need not: see docs/RNN.md)
    assert per_k["4"]["relative_error"]["quantised_rnn"] < per_k["1"]["relative_error"]["quantised_rnn"]
