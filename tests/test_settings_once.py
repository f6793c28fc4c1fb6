"""The recurrent evaluation and the NIR export check take the one ConversionConfig: every setting is
checked once, when it comes in, and the model once per conversion (as tests/test_conversion_config.py
counts for the image path)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

import lightning_snn.conversion_config as conversion_config
import lightning_snn.graph as graph
import lightning_snn.neurons as neurons
import lightning_snn.recurrent_conversion as recurrent_conversion
import lightning_snn.simulation as simulation
from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.recurrent_conversion import OUTPUT_KEY, RECURRENT_KEY, convert_recurrent
from lightning_snn.recurrent_evaluation import evaluate_recurrent_conversion
from tests.test_recurrent_conversion import text_batch, tiny_sentiment_rnn


def count_calls(monkeypatch, home, name: str) -> list[int]:
    """Count the calls of ``home.name`` from every lightning_snn module that holds it under that name."""
    original, calls = getattr(home, name), [0]

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("lightning_snn") and getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, counted)
    return calls


def sentences() -> list:
    ids, lengths = text_batch()
    return [((ids, lengths), torch.tensor([0, 1, 2]))]


def count_recurrent_checks(monkeypatch) -> dict[str, list[int]]:
    return {
        "timesteps": count_calls(monkeypatch, simulation, "validate_timesteps"),
        "neuron": count_calls(monkeypatch, neurons, "neuron_class"),
        "output_loops": count_calls(monkeypatch, conversion_config, "validate_output_loops"),
        "model": count_calls(monkeypatch, recurrent_conversion, "check_recurrent_convertible"),
    }


@pytest.mark.parametrize("evaluate", [evaluate_conversion, evaluate_recurrent_conversion])
def test_the_recurrent_evaluation_checks_each_setting_once(monkeypatch, evaluate):
    counts = count_recurrent_checks(monkeypatch)
    report = evaluate(tiny_sentiment_rnn(), sentences(), sentences(), [4, 2], neuron="signed", output_loops=[2, 1])
    # before: the neuron compared as a string (no registry), the model checked 3 times (settings,
    # calibration, conversion)
    assert {k: v[0] for k, v in counts.items()} == {"timesteps": 1, "neuron": 1, "output_loops": 1, "model": 1}
    assert report.timesteps == [2, 4] and report.output_loops == [1, 2] and report.neuron == "signed"


def test_the_callback_checks_recurrent_settings_once_and_the_model_once_per_conversion(tmp_path, monkeypatch):
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    from tests.test_callback import fake_trainer

    (((ids, lengths), labels),) = sentences()
    texts = [((ids[i], lengths[i]), labels[i]) for i in range(len(labels))]  # collated back into a text batch
    data = SimpleNamespace(calibration_set=lambda n, seed: texts, test_set=texts, eval_batch_size=2, num_workers=0)
    module = SimpleNamespace(model=tiny_sentiment_rnn(), device=torch.device("cpu"))
    counts = count_recurrent_checks(monkeypatch)
    callback = SNNConversion(timesteps=[2, 4], output_loops=[1, 2], diagnostics=False, neuron="signed")
    trainer = fake_trainer(tmp_path, datamodule=data)
    callback.setup(trainer, module, stage="fit")
    assert counts["model"][0] == 1  # the model refused or accepted before training
    callback.evaluate(trainer, module, stage="fit")
    # before: validate_timesteps 2, output_loops 2, the model checked 1 + 3 times (counted on main)
    assert {k: v[0] for k, v in counts.items()} == {"timesteps": 1, "neuron": 1, "output_loops": 1, "model": 2}
    assert callback.results["recurrent"]["output_loops"] == [1, 2] and callback.results["neuron"] == "signed"


def test_the_recurrent_neuron_is_asked_of_the_registry():
    model, thresholds = tiny_sentiment_rnn(), {RECURRENT_KEY: 1.0, OUTPUT_KEY: 1.0}
    assert convert_recurrent(model, thresholds, neuron="lightning_snn.neurons.SignedIFNeuron").signed
    assert not convert_recurrent(model, thresholds, neuron="lightning_snn.neurons.IFNeuron").signed
    with pytest.raises(ValueError, match="not implemented for the recurrent SNN; use one of \\['if', 'signed'\\]"):
        convert_recurrent(model, thresholds, neuron="tests.test_neuron_models.ResetToZero")


def test_the_callback_checks_export_settings_once_and_prepares_once_per_conversion(tmp_path, monkeypatch):
    pytest.importorskip("nir")
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    from tests.test_callback import fake_trainer, tiny_module

    prepares = count_calls(monkeypatch, graph, "prepare")
    lookups = count_calls(monkeypatch, neurons, "neuron_class")
    callback = SNNConversion(timesteps=[2, 4], diagnostics=False, export="nir", export_timesteps=4)
    assert lookups[0] == 1  # before: 2 (the conversion's settings and the export's)
    trainer, module = fake_trainer(tmp_path), tiny_module()
    callback.setup(trainer, module, stage="fit")
    assert prepares[0] == 1 and lookups[0] == 1  # before: 3 prepares (the config's check, the export's two)
    callback.evaluate(trainer, module, stage="fit")
    assert prepares[0] == 2 and lookups[0] == 1  # the trained weights, prepared once (before: 4 prepares)
    assert list(tmp_path.rglob("snn.nir"))
