"""Trust (issue 23) through the command line, on the tiny synthetic data of test_faults.py:
a checkpoint's settings never silently replace the command line's, a damaged checkpoint is
named, unconvertible models and bad settings fail before training, Ctrl-C exits 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

from lightning_snn.checkpoints import CheckpointError
from lightning_snn.cli import SIGINT_EXIT_STATUS, main
from lightning_snn.graph import ConversionError
from tests.conftest import REPO
from tests.test_faults import cli_args, finish, results, tiny_data, wait_for  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory) -> Path:  # noqa: F811
    """A vgg11 at width 1/16 trained one epoch (relu_warmup_epochs 0, the config says 3)."""
    root = tmp_path_factory.mktemp("trained")
    main(["fit", *cli_args(tiny_data, root), "--snn.on_fit=false"])
    return sorted(root.rglob("last.ckpt"))[0]


def test_a_model_setting_the_checkpoint_would_replace_is_refused(tiny_data, checkpoint, tmp_path):  # noqa: F811
    for override, named in (
        (["--model.arch=vgg13"], r"--model\.arch 'vgg13' \(the checkpoint's: 'vgg11'\)"),
        (["--model.width", "0.25"], r"--model\.width 0\.25 \(the checkpoint's: 0\.0625\)"),
    ):
        with pytest.raises(ValueError, match=named):
            main(["test", *cli_args(tiny_data, tmp_path), f"--ckpt_path={checkpoint}", *override])
    assert not results(tmp_path)
    # the config file's relu_warmup_epochs (3, cli_args passes 0 explicitly: drop it) yields, with a warning
    args = [a for a in cli_args(tiny_data, tmp_path) if not a.startswith("--model.relu_warmup_epochs")]
    with pytest.warns(UserWarning, match=r"checkpoint's relu_warmup_epochs=0 \(the config says 3\)"):
        main(["test", *args, f"--ckpt_path={checkpoint}"])
    assert len(results(tmp_path)) == 1


def test_a_truncated_checkpoint_is_named_corrupt_or_incomplete(tiny_data, checkpoint, tmp_path):  # noqa: F811
    cut = tmp_path / "cut.ckpt"
    data = checkpoint.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.ckpt' is corrupt or incomplete"):
        main(["test", *cli_args(tiny_data, tmp_path), f"--ckpt_path={cut}"])


def test_an_unconvertible_model_is_refused_before_the_first_epoch(tiny_data, tmp_path):  # noqa: F811
    model = ["--model.arch=tests.user_models.UpsamplingNet", "--model.width=1", "--model.model_kwargs=null"]
    with pytest.raises(ConversionError, match="Upsample"):
        main(["fit", *cli_args(tiny_data, tmp_path), *model])
    assert not list(tmp_path.rglob("*.ckpt"))  # refused in setup: no epoch ran


def test_a_nan_percentile_gets_the_settings_message(tiny_data, tmp_path):  # noqa: F811
    args = [*cli_args(tiny_data, tmp_path), "--snn.calibration=percentile"]
    for value, error in (("nan", TypeError), (".nan", ValueError), ("abc", TypeError)):
        with pytest.raises(error, match="percentile must be"):
            main([*args, f"--snn.percentile={value}"], run=False)


class CtrlC(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_exits_with_130(tiny_data, tmp_path):  # noqa: F811
    """Lightning catches KeyboardInterrupt, shuts down and calls sys.exit(1); a shell's convention is 130."""
    cli = main(cli_args(tiny_data, tmp_path), run=False)
    cli.trainer.callbacks.append(CtrlC())
    with pytest.raises(SystemExit) as info:
        cli._stop_on_sigterm(cli.trainer.fit, model=cli.model, datamodule=cli.datamodule)
    assert info.value.code == SIGINT_EXIT_STATUS == 128 + signal.SIGINT
    with pytest.raises(SystemExit) as info:  # any other exit status passes through
        cli._stop_on_sigterm(lambda: exit(3))
    assert info.value.code == 3


@pytest.mark.slow
def test_sigint_during_training_exits_130(tiny_data, tmp_path):  # noqa: F811
    args = ["fit", *cli_args(tiny_data, tmp_path, epochs=1000), "--run_name=ctrl_c"]
    log = tmp_path / "run.log"
    # a shell's background job (`cmd &`, CI runners) starts with SIGINT ignored, which Python keeps:
    # give the run the terminal's default, as for a command typed at a prompt
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    wait_for((tmp_path / "ctrl_c" / "checkpoints" / "last.ckpt").is_file, proc, log, "the first epoch")
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc, log)
    assert code == SIGINT_EXIT_STATUS, out[-3000:]
    assert "stopped by SIGINT" in out and not results(tmp_path)
    assert not list(tmp_path.rglob("snn_results.json"))  # the claimed results file was released
