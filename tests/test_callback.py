"""The conversion callback's own contracts: validated settings, atomic result files."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from lightning_snn.callbacks.run_files import MARKER, claim_dir, claim_files
from lightning_snn.callbacks.snn_conversion import (
    SigtermFlag,
    SNNConversion,
    shard,
    until_sigterm,
    write_json_atomic,
)
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset


def test_results_file_is_never_half_written(tmp_path):
    path = tmp_path / "snn_results.json"
    write_json_atomic(path, {"snn_acc": {"16": 90.0}})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})  # fails while serialising
    assert json.loads(path.read_text()) == {"snn_acc": {"16": 90.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["snn_results.json"]  # no temp file left


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"timesteps": []}, "empty"),
        ({"timesteps": [16, -1]}, "> 0"),
        ({"shift": "half"}, "shift"),
        ({"readout": "vote"}, "readout"),
        ({"calibration_samples": 0}, "calibration_samples"),
        ({"max_test_samples": -5}, "max_test_samples"),
        ({"time_chunk": 0}, "time_chunk"),
        ({"neuron": "lif"}, "unknown neuron 'lif'"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SNNConversion(**kwargs)


def test_timesteps_are_sorted_and_deduplicated():
    assert SNNConversion(timesteps=[64, 16, 64, 32]).timesteps == [16, 32, 64]


def test_shards_cover_the_set_once():
    data = list(range(10))
    parts = [list(shard(data, r, 3)) for r in range(3)]
    assert sorted(sum(parts, [])) == data
    assert shard(data, 0, 1) is data


# ---- settings that used to fail late or silently -------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"time_chunk": "abc"}, ValueError, "time_chunk must be a positive int or 'auto', got 'abc'"),
        ({"time_chunk": 2.5}, TypeError, "time_chunk"),
        ({"batch_size": 0}, ValueError, "snn.batch_size must be a positive int"),
        ({"batch_size": -1}, ValueError, "snn.batch_size must be a positive int"),
        ({"results_file": ""}, ValueError, "results_file"),
    ],
)
def test_more_bad_settings_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        SNNConversion(**kwargs)


# ---- files: permissions, claims, never overwriting -------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_results_file_gets_the_usual_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "snn_results.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "snn_results.json").stat().st_mode) == mode


def test_a_claimed_directory_is_never_handed_to_a_second_run(tmp_path):
    first, second, third = (claim_dir(tmp_path / "root") for _ in range(3))
    assert first == tmp_path / "root"
    assert second == first / "run_1" and third == first / "run_2"
    assert all((d / MARKER).is_file() for d in (first, second, third))


def test_a_second_claim_moves_into_a_new_folder(tmp_path):
    (first,) = claim_files(tmp_path, ["snn_results.json"], "snn.results_file")
    assert first == tmp_path / "snn_results.json"
    (moved,) = claim_files(tmp_path, ["snn_results.json"], "snn.results_file")
    assert moved.parent.parent == tmp_path and moved != first


def test_unwritable_results_path_is_refused_with_the_setting_named(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="snn.results_file: cannot write"):
        claim_files(tmp_path, [tmp_path / "a_file" / "snn_results.json"], "snn.results_file")


class FakeLogger:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log_metrics(self, metrics, step) -> None:
        self.logged.append(metrics)


class FakeTrainer(SimpleNamespace):
    """A SimpleNamespace that can be a weak dict key (the run directory is cached per trainer)."""

    __hash__ = object.__hash__


def fake_trainer(tmp_path, **overrides) -> FakeTrainer:
    """What the callback reads from a Trainer: no logger, so files go to default_root_dir."""
    values = dict(
        logger=None,
        loggers=[FakeLogger()],
        default_root_dir=str(tmp_path / "run"),
        is_global_zero=True,
        global_rank=0,
        world_size=1,
        current_epoch=1,
        global_step=10,
        received_sigterm=False,
        progress_bar_callback=None,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        datamodule=SimpleNamespace(
            calibration_set=lambda n, seed: TensorDataset(torch.ones(8, 16)),
            test_set=TensorDataset(torch.ones(8, 16), torch.zeros(8, dtype=torch.long)),
            eval_batch_size=4,
            num_workers=0,
        ),
    )
    values.update(overrides)
    return FakeTrainer(**values)


def tiny_module():
    from tests.test_evaluation import binary_hidden_net

    module = torch.nn.Module()
    module.model = binary_hidden_net()
    module.device = torch.device("cpu")
    return module


def test_results_are_printed_and_logged_before_a_failing_write(tmp_path, caplog):
    trainer = fake_trainer(tmp_path)
    (tmp_path / "a_file").write_text("")  # the results file's folder is a file: the write will fail
    callback = SNNConversion(timesteps=[2, 4], results_file=str(tmp_path / "a_file" / "snn_results.json"))
    caplog.set_level(logging.INFO)
    with pytest.raises(OSError, match="printed and logged, but writing"):
        callback.evaluate(trainer, tiny_module(), stage="test")
    assert "snn/acc_T4" in trainer.loggers[0].logged[0]
    assert "ANN accuracy" in caplog.text


def test_setup_checks_the_results_path_before_training(tmp_path):
    (tmp_path / "a_file").write_text("")
    unwritable = str(tmp_path / "a_file" / "snn_results.json")
    trainer = fake_trainer(tmp_path)
    with pytest.raises(ValueError, match="snn.results_file: cannot write"):
        SNNConversion(results_file=unwritable).setup(trainer, tiny_module(), stage="fit")
    SNNConversion(results_file=unwritable, on_fit=False).setup(trainer, tiny_module(), stage="fit")  # no evaluation
    trainer = fake_trainer(tmp_path, default_root_dir=str(tmp_path / "a_file" / "run"))
    with pytest.raises(ValueError, match="cannot create the run directory"):
        SNNConversion().setup(trainer, tiny_module(), stage="fit")


def test_setup_refuses_signed_neurons_before_a_gated_max_pool_before_training(tmp_path):
    from lightning_snn.graph import ConversionError

    module = tiny_module()
    module.model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2)
    )
    with pytest.raises(ConversionError, match="neurons fire negative ones and cannot feed them"):
        SNNConversion(neuron="signed").setup(fake_trainer(tmp_path), module, stage="fit")
    SNNConversion(neuron="if").setup(fake_trainer(tmp_path), module, stage="fit")


def test_an_absolute_results_file_that_exists_is_refused(tmp_path):
    taken = tmp_path / "other_run.json"
    taken.write_text("{}")
    with pytest.raises(ValueError, match="another run's results"):
        SNNConversion(results_file=str(taken)).setup(fake_trainer(tmp_path), tiny_module(), stage="test")


def test_evaluation_stops_at_the_next_batch_on_sigterm(tmp_path):
    trainer = fake_trainer(tmp_path, received_sigterm=True)
    with pytest.raises(SIGTERMException):
        SNNConversion(timesteps=[4]).evaluate(trainer, tiny_module(), stage="fit")
    assert not list(tmp_path.rglob("snn_results.json"))
    seen = []
    flags = iter([False, False, True])
    trainer = SimpleNamespace(received_sigterm=False)
    with pytest.raises(SIGTERMException):
        for batch in until_sigterm(trainer, range(10)):
            seen.append(batch)
            trainer.received_sigterm = next(flags)
    assert seen == [0, 1, 2]


def test_one_run_evaluating_twice_keeps_both_results(tmp_path):
    trainer = fake_trainer(tmp_path)
    callback = SNNConversion(timesteps=[4])
    callback.evaluate(trainer, tiny_module(), stage="fit")
    callback.evaluate(trainer, tiny_module(), stage="test")
    stages = sorted(json.loads(p.read_text())["stage"] for p in tmp_path.rglob("snn_results.json"))
    assert stages == ["fit", "test"]


def test_sigterm_during_the_evaluation_sets_the_flag_and_the_old_handler_comes_back():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with SigtermFlag() as flag:
            os.kill(os.getpid(), signal.SIGTERM)
            assert flag.received and calls == [signal.SIGTERM]  # the earlier handler still ran
            with pytest.raises(SIGTERMException):
                next(until_sigterm(SimpleNamespace(received_sigterm=False), [1, 2], flag))
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM, signal.SIGTERM]  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- where in Lightning's fit the conversion runs ----------------------------------------------
class TinyData(pl.LightningDataModule):
    """Random 32x32 images with what the callback reads from a DataModule."""

    eval_batch_size, num_workers = 8, 0

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
        self.test_set = self.data

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=8)

    def calibration_set(self, n, seed):
        return TensorDataset(self.data.tensors[0])


def fit_recording(tmp_path, **trainer_kwargs) -> tuple[list, SNNConversion]:
    """Fit a tiny VGG with the callback; return the order of the evaluations and the strategy's
    teardown (which moves the model to the CPU), with the device the trainer ran on."""
    from lightning_snn.module import ConversionModule

    events: list = []
    callback = SNNConversion(timesteps=[2, 4], diagnostics=False)
    evaluate = callback.evaluate

    def recording_evaluate(trainer, pl_module, stage):
        events.append(("evaluate", stage, next(pl_module.parameters()).device == trainer.strategy.root_device))
        return evaluate(trainer, pl_module, stage)

    callback.evaluate = recording_evaluate
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[callback],
        **trainer_kwargs,
    )
    teardown = trainer.strategy.teardown
    trainer.strategy.teardown = lambda: (events.append(("teardown",)), teardown())[1]
    torch.manual_seed(0)
    module = ConversionModule(arch="vgg11", width=1 / 16, relu_warmup_epochs=0)
    trainer.fit(module, datamodule=TinyData())
    return events, callback


def test_the_fit_conversion_runs_before_the_teardown_moves_the_model_to_the_cpu(tmp_path):
    # on_fit_end comes after Lightning's teardown, which moves the model to the CPU: a GPU run
    # converted on the CPU there (session 6: a full-width VGG-16 on an H100 did not finish in 4 min)
    events, callback = fit_recording(tmp_path)
    assert events == [("evaluate", "fit", True), ("teardown",)]
    assert callback.results["stage"] == "fit" and callback.results["epoch"] == 1


def test_a_fit_without_a_training_loop_still_converts_once_on_the_trainers_device(tmp_path):
    events, callback = fit_recording(tmp_path, limit_train_batches=0)  # no on_train_end at all
    assert events == [("teardown",), ("evaluate", "fit", True)]
    assert callback.results["stage"] == "fit"
