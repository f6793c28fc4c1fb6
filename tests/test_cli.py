"""The command line, end to end, on a small subset of the real CIFAR-10."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def tiny_args(cifar10_dir, workdir: Path, timesteps="[4,16,64]") -> list[str]:
    """Overrides that make any config run in seconds on 2 CPU cores."""
    return [
        f"--data.init_args.data_dir={cifar10_dir}",
        "--data.init_args.download=false",
        "--data.init_args.train_samples=512",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=64",
        f"--trainer.logger.init_args.save_dir={workdir}",
        f"--trainer.default_root_dir={workdir}",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--model.width=0.0625",
        f"--snn.timesteps={timesteps}",
        "--snn.calibration_samples=128",
        "--snn.max_test_samples=96",
        "--snn.batch_size=48",
    ]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def results_files(root: Path) -> list[Path]:
    return sorted(root.rglob("snn_results.json"), key=lambda p: p.stat().st_mtime)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_parses_and_builds(config, tmp_path):
    from lightning_snn.cli import main

    cli = main(["-c", str(config), f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    assert cli.model.model is not None
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    assert any(type(cb).__name__ == "SNNConversion" for cb in cli.trainer.callbacks)


def test_fit_then_test_gives_identical_snn_numbers(cifar10_dir, tmp_path):
    cfg = str(REPO / "configs" / "quickstart.yaml")
    run_cli(
        ["fit", "-c", cfg, *tiny_args(cifar10_dir, tmp_path), "--trainer.max_epochs=2", "--model.relu_warmup_epochs=1"],
        cwd=tmp_path,
    )
    (fit_json,) = results_files(tmp_path)
    fit = json.loads(fit_json.read_text())
    assert fit["stage"] == "fit"
    assert set(fit["snn_acc"]) == {"4", "16", "64"} == set(fit["conversion_loss"])
    assert fit["num_test_images"] == 96 and fit["calibration_images"] == 128
    assert (fit_json.parent / "config.yaml").is_file()  # config saved per run

    ckpts = sorted(tmp_path.rglob("*.ckpt"))
    assert ckpts, "fit wrote no checkpoint"
    run_cli(["test", "-c", cfg, *tiny_args(cifar10_dir, tmp_path), f"--ckpt_path={ckpts[-1]}"], cwd=tmp_path)
    test_json = results_files(tmp_path)[-1]
    assert test_json != fit_json
    test = json.loads(test_json.read_text())
    assert test["stage"] == "test"
    for key in ("ann_acc", "snn_acc", "conversion_loss", "thresholds"):
        assert test[key] == fit[key], key


def test_missing_data_with_download_off_says_what_to_do(tmp_path):
    from lightning_snn.data import CIFAR10DataModule

    dm = CIFAR10DataModule(str(tmp_path / "nowhere"), download=False)
    with pytest.raises(FileNotFoundError, match="download"):
        dm.prepare_data()


def test_unknown_model_name_is_a_clear_error(tmp_path):
    from lightning_snn.models import create_model

    with pytest.raises(ValueError, match="unknown model 'resnet1000'"):
        create_model("resnet1000")
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "fit",
            "-c",
            str(REPO / "configs" / "quickstart.yaml"),
            "--model.arch=resnet1000",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "unknown model 'resnet1000'" in proc.stderr


@pytest.mark.parametrize("bad", ["[]", "[0,16]"])
def test_bad_timesteps_on_the_command_line(bad, tmp_path):
    from lightning_snn.cli import main

    with pytest.raises((ValueError, SystemExit)):
        main(
            [
                "-c",
                str(REPO / "configs" / "quickstart.yaml"),
                f"--snn.timesteps={bad}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ],
            run=False,
        )


def test_ddp_thresholds_and_accuracy_equal_one_process(cifar10_dir, tmp_path):
    """devices=2, strategy=ddp on CPU (gloo) must give the numbers of one process."""
    cfg = str(REPO / "configs" / "quickstart.yaml")
    args = tiny_args(cifar10_dir, tmp_path, timesteps="[8,32]")
    run_cli(
        ["fit", "-c", cfg, *args, "--trainer.max_epochs=1", "--model.relu_warmup_epochs=0", "--snn.on_fit=false"],
        cwd=tmp_path,
    )
    ckpt = sorted(tmp_path.rglob("*.ckpt"))[-1]
    run_cli(["test", "-c", cfg, *args, f"--ckpt_path={ckpt}", "--trainer.devices=1"], cwd=tmp_path)
    single = json.loads(results_files(tmp_path)[-1].read_text())
    run_cli(
        [
            "test",
            "-c",
            cfg,
            *args,
            f"--ckpt_path={ckpt}",
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
            "--trainer.accelerator=cpu",
        ],
        cwd=tmp_path,
    )
    ddp = json.loads(results_files(tmp_path)[-1].read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["thresholds"] == single["thresholds"]
    assert ddp["output_threshold"] == single["output_threshold"]
    assert ddp["snn_acc"] == single["snn_acc"]
    assert ddp["ann_acc"] == single["ann_acc"]
