"""Faults and files through the command line: bad settings fail before training, runs never
overwrite each other's results, SIGTERM exits non-zero, and a killed run resumes.

Small runs on a synthetic CIFAR-shaped data set (the behaviour, not the accuracy, is tested).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_snn.cli import SIGTERM_EXIT_STATUS, check_lightning_checkpoint, latest_checkpoint, main
from lightning_snn.module import warmup_covers_training
from tests.conftest import REPO

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
STEPS_PER_EPOCH = 2  # 128 training images, batch 64


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cifar_like")
    rng = np.random.default_rng(0)
    for split, n in (("train", 128), ("test", 32)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        np.savez(folder / f"{split}.npz", images=images, labels=np.arange(n) % 10)
    return folder


def cli_args(data: Path, root: Path, *extra: str, epochs: int = 1) -> list[str]:
    return [
        "-c",
        QUICKSTART,
        f"--data.init_args.data_dir={data}",
        "--data.init_args.download=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=64",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_epochs={epochs}",
        "--trainer.limit_val_batches=2",  # not 1: jsonargparse hands Lightning 1 as 1.0, i.e. all batches
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--model.width=0.0625",
        "--model.relu_warmup_epochs=0",
        "--snn.timesteps=[4,8]",
        "--snn.calibration_samples=64",
        "--snn.max_test_samples=32",
        "--snn.batch_size=32",
        *extra,
    ]


def results(root: Path) -> list[Path]:
    return sorted(root.rglob("snn_results.json"))


# ---- in-process: refused before training ------------------------------------------------------
def test_ckpt_path_last_without_a_run_name_is_refused(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="--ckpt_path last resumes a named run, but no --run_name"):
        main(["fit", *cli_args(tiny_data, tmp_path), "--ckpt_path=last"])
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_plain_state_dict_as_ckpt_path_points_to_init_from(tiny_data, tmp_path):
    from lightning_snn.models import create_model

    path = tmp_path / "weights.pt"
    torch.save(create_model("vgg11", width=0.0625).state_dict(), path)
    with pytest.raises(ValueError, match=r"plain state dict .* --model.init_from"):
        main(["test", *cli_args(tiny_data, tmp_path), f"--ckpt_path={path}"])
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        check_lightning_checkpoint(tmp_path / "missing.ckpt")


def test_an_unwritable_results_file_fails_before_training(tiny_data, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="snn.results_file: cannot write"):
        main(["fit", *cli_args(tiny_data, tmp_path), f"--snn.results_file={tmp_path / 'a_file' / 'r.json'}"])
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    "override, error, match",
    [
        ("--snn.time_chunk=abc", ValueError, "time_chunk must be a positive int or 'auto', got 'abc'"),
        ("--snn.batch_size=0", ValueError, "snn.batch_size must be a positive int"),
        ("--snn.batch_size=-1", ValueError, "snn.batch_size must be a positive int"),
        ("--model.model_kwargs={fc_dropuot: 0.1}", TypeError, r"\['fc_dropuot'\].*'fc_dropout'"),
        ("--run_name=a/b", ValueError, "run_name 'a/b' must be letters"),
    ],
)
def test_bad_settings_fail_when_the_run_is_built(tiny_data, tmp_path, override, error, match):
    with pytest.raises(error, match=match):
        main([*cli_args(tiny_data, tmp_path), override], run=False)


def test_sigterm_exits_with_143(tiny_data, tmp_path):
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    cli = main(cli_args(tiny_data, tmp_path), run=False)

    def killed(**kwargs):
        raise SIGTERMException

    with pytest.raises(SystemExit) as info:
        cli._stop_on_sigterm(killed)
    assert info.value.code == SIGTERM_EXIT_STATUS == 128 + signal.SIGTERM


def test_warmup_covering_the_whole_run_is_flagged():
    assert warmup_covers_training("threshold_relu", 20, 8) is not None
    assert warmup_covers_training("threshold_relu", 8, 8) is not None
    assert warmup_covers_training("threshold_relu", 3, 8) is None
    assert warmup_covers_training("threshold_relu", 0, 0) is None  # clipped from the start
    assert warmup_covers_training("relu", 20, 8) is None  # a plain-ReLU run says so itself
    assert warmup_covers_training("threshold_relu", 20, -1) is None  # no epoch limit


def test_latest_checkpoint_is_the_newest_of_last_and_hpc(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    for i, name in enumerate(["checkpoints/epoch=3.ckpt", "checkpoints/last.ckpt", "hpc_ckpt_1.ckpt"]):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    assert latest_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
    os.utime(tmp_path / "checkpoints/last.ckpt", (2000, 2000))
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints/last.ckpt"


# ---- in-process: real short runs -----------------------------------------------------------
def test_runs_in_one_root_never_overwrite_each_others_files(tiny_data, tmp_path):
    """logger false: every run used to write <root>/snn_results.json and <root>/config.yaml."""
    main(["fit", *cli_args(tiny_data, tmp_path)])
    (first,) = results(tmp_path)
    first_text = first.read_text()
    ckpt = sorted(tmp_path.rglob("epoch=*.ckpt"))[0]
    main(["test", *cli_args(tiny_data, tmp_path), f"--ckpt_path={ckpt}"])
    main(["fit", *cli_args(tiny_data, tmp_path)])
    files = results(tmp_path)
    assert len(files) == 3 and len({f.parent for f in files}) == 3
    assert sorted(json.loads(f.read_text())["stage"] for f in files) == ["fit", "fit", "test"]
    assert first.read_text() == first_text
    assert all((f.parent / "config.yaml").is_file() for f in files)
    assert json.loads(first_text)["threshold_clip_on"] is True


def test_warmup_longer_than_training_warns_at_the_start_and_is_recorded(tiny_data, tmp_path):
    with pytest.warns(UserWarning, match="never clips"):
        main(["fit", *cli_args(tiny_data, tmp_path), "--model.relu_warmup_epochs=5"])
    (path,) = results(tmp_path)
    assert json.loads(path.read_text())["threshold_clip_on"] is False


# ---- subprocesses: signals, resuming, SLURM ----------------------------------------------------
def launch(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    full_env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    full_env.update(env)
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args], stdout=out, stderr=subprocess.STDOUT, env=full_env
        )


def wait_for(condition, proc: subprocess.Popen, log: Path, what: str, limit: float = 300) -> None:
    """Poll ``condition`` while ``proc`` runs (the limit only bounds a hung test, it asserts nothing)."""
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gave up waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def finish(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=600)
    finally:
        proc.kill()
    return code, log.read_text()


@pytest.mark.slow
def test_sigterm_stops_training_with_143_and_the_named_run_resumes(tiny_data, tmp_path):
    args = ["fit", *cli_args(tiny_data, tmp_path, epochs=1000), "--run_name=exp1"]
    last = tmp_path / "exp1" / "checkpoints" / "last.ckpt"
    proc = launch(args, tmp_path / "1.log")
    wait_for(last.is_file, proc, tmp_path / "1.log", "the first last.ckpt")
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc, tmp_path / "1.log")
    assert code == SIGTERM_EXIT_STATUS, out[-3000:]
    assert "stopped by SIGTERM" in out and "--ckpt_path last" in out
    assert not results(tmp_path)  # the evaluation never ran

    saved = torch.load(last, map_location="cpu", weights_only=False)
    done_epochs, done_steps = saved["epoch"] + 1, saved["global_step"]
    assert done_steps == done_epochs * STEPS_PER_EPOCH
    # one more epoch of one of the two batches (0.5: jsonargparse reads "1" as 1.0, all batches); from
    # scratch this would be done_epochs + 1 steps in all
    resumed = ["fit", *cli_args(tiny_data, tmp_path, epochs=done_epochs + 1), "--run_name=exp1", "--ckpt_path=last"]
    code, out = finish(launch([*resumed, "--trainer.limit_train_batches=0.5"], tmp_path / "2.log"), tmp_path / "2.log")
    assert code == 0, out[-3000:]
    assert f"resuming from {last}" in out
    (path,) = results(tmp_path)
    assert json.loads(path.read_text())["global_step"] == done_steps + 1


@pytest.mark.slow
def test_sigterm_during_the_snn_evaluation_is_honoured(tiny_data, tmp_path):
    # T = 4096 in batches of 4: minutes of simulation, so only SIGTERM can end this run early
    args = ["fit", *cli_args(tiny_data, tmp_path), "--snn.timesteps=[4096]", "--snn.batch_size=4"]
    log = tmp_path / "run.log"
    proc = launch(args, log)
    wait_for(lambda: "SNN conversion (fit): calibrating" in log.read_text(), proc, log, "the SNN evaluation")
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc, log)
    assert code == SIGTERM_EXIT_STATUS, out[-3000:]
    assert "stopped by SIGTERM" in out
    assert not results(tmp_path)


def slurm_env(tmp_path: Path, job_id: str, rank: int, ntasks: int) -> dict[str, str]:
    """What srun sets for one task on one node; a fake scontrol records the requeue request."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_NAME": "lightning-snn-test",
        "SLURM_NTASKS": str(ntasks),
        "SLURM_NTASKS_PER_NODE": str(ntasks),
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank),
        "SLURM_NODELIST": "localhost",
        "MASTER_PORT": str(20000 + os.getpid() % 20000),
    }


@pytest.mark.slow
def test_slurm_requeue_signal_checkpoints_requeues_and_the_requeued_job_resumes(tiny_data, tmp_path):
    """Lightning's SLURM convention: SIGUSR1 (sbatch --signal=USR1@90) writes hpc_ckpt_<n>.ckpt into the
    run's directory and asks scontrol to requeue the job; the requeued job resumes from it."""
    env = slurm_env(tmp_path, "4242", rank=0, ntasks=1)
    args = ["fit", *cli_args(tiny_data, tmp_path, epochs=1000), "--run_name=job4242", "--ckpt_path=last"]
    log = tmp_path / "1.log"
    proc = launch([*args, "--trainer.accelerator=cpu"], log, **env)
    wait_for((tmp_path / "job4242" / "checkpoints" / "last.ckpt").is_file, proc, log, "the first epoch")
    proc.send_signal(signal.SIGUSR1)
    hpc = tmp_path / "job4242" / "hpc_ckpt_1.ckpt"
    wait_for(lambda: (tmp_path / "scontrol.log").is_file(), proc, log, "the requeue request")
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert hpc.is_file()
    proc.send_signal(signal.SIGTERM)  # what SLURM sends when the time is up
    code, out = finish(proc, log)
    assert code == SIGTERM_EXIT_STATUS, out[-3000:]

    resume_from = latest_checkpoint(tmp_path / "job4242")  # hpc_ckpt_1 or a later last.ckpt, whichever is newer
    epoch = torch.load(resume_from, map_location="cpu", weights_only=False)["epoch"]
    requeued = [*args, f"--trainer.max_epochs={epoch + 2}", "--trainer.accelerator=cpu"]  # the same command
    code, out = finish(launch(requeued, tmp_path / "2.log", **env), tmp_path / "2.log")
    assert code == 0, out[-3000:]
    assert f"resuming from {resume_from}" in out
    assert f"Restoring states from the checkpoint path at {resume_from}" in out
    (path,) = results(tmp_path)
    assert json.loads(path.read_text())["epoch"] == epoch + 2


@pytest.mark.slow
def test_two_slurm_tasks_train_and_convert_as_one_run(tiny_data, tmp_path):
    """srun --ntasks-per-node=2 on one node, as two CPU processes with the SLURM variables set."""
    args = [
        "fit",
        *cli_args(tiny_data, tmp_path),
        "--run_name=ddp_job",
        "--ckpt_path=last",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    procs = [launch(args, tmp_path / f"rank{r}.log", **slurm_env(tmp_path, "777", rank=r, ntasks=2)) for r in range(2)]
    outs = [finish(p, tmp_path / f"rank{r}.log") for r, p in enumerate(procs)]
    for code, out in outs:
        assert code == 0, out[-3000:]
    (path,) = results(tmp_path)  # written once, by rank 0
    r = json.loads(path.read_text())
    assert r["world_size"] == 2 and r["num_test_images"] == 32 and r["calibration_images"] == 64
    assert (tmp_path / "ddp_job" / "checkpoints" / "last.ckpt").is_file()
    assert "SLURM auto-requeueing enabled" in outs[0][1]  # Lightning took the SLURM variables, not a local launch
