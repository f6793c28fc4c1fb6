"""The recurrent conversion of appendix A.4 against its theory (lightning_snn.spiking_recurrent's docstring).

Exact equalities are asserted where the arithmetic is exact: dyadic weights, inputs, tau and thresholds,
and K a power of two, so every sum below is exact in float32 in any order.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.activations import ThresholdReLU, make_activation, set_threshold_enabled
from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.graph import ConversionError
from lightning_snn.models import create_model
from lightning_snn.models.rnn import SentimentRNN, ThresholdRNN, quantise
from lightning_snn.recurrent_conversion import (
    OUTPUT_KEY,
    RECURRENT_KEY,
    calibrate_recurrent_thresholds,
    check_recurrent_convertible,
    convert_recurrent,
    is_recurrent,
)
from lightning_snn.recurrent_evaluation import check_recurrent_settings, evaluate_recurrent_conversion
from lightning_snn.spiking_recurrent import looped_if, recurrent_if


def single_unit_layer(tau: float) -> ThresholdRNN:
    """One unit, no recurrent weights, input current = the input itself (W_x = 1, b = 0), clip 1."""
    layer = ThresholdRNN(1, 1, lambda: ThresholdReLU(1.0, enabled=True), tau=tau, recurrent=False)
    with torch.no_grad():
        layer.input.weight.fill_(1.0)
        layer.input.bias.zero_()
    return layer


#: word currents of the hand-made case (worked out by hand in docs/RNN.md)
HAND_CURRENTS = [0.375, 0.875, 0.0, 0.625]


@pytest.mark.parametrize(
    ("tau", "k", "expected"),
    [
        (1.0, 4, [1, 4, 0, 2]),  # quantised: the remaining 1/8 of word 1 completes word 2
        (0.5, 4, [1, 3, 0, 2]),  # half of it is forgotten at each word boundary
        (1.0, 8, [3, 7, 0, 5]),  # enough steps: K u / theta is an integer at every word
    ],
)
def test_hand_made_case_spike_counts(tau, k, expected):
    layer = single_unit_layer(tau)
    x = torch.tensor(HAND_CURRENTS).view(1, 4, 1)
    counts = recurrent_if(layer.input(x).detach(), None, 1.0, tau, k)
    assert counts.flatten().tolist() == expected
    quantised, _ = layer.quantised(x, 1.0, k)
    assert (quantised * k).flatten().tolist() == expected
    if k == 8:  # where K u is an integer the quantiser is the threshold ReLU itself
        o, _ = layer(x)
        assert (o.detach() * k).flatten().tolist() == expected


def dyadic(shape, low: float, high: float, bits: int = 3, generator=None) -> torch.Tensor:
    """Uniform multiples of 2^-bits in [low, high]."""
    steps = torch.randint(int(low * 2**bits), int(high * 2**bits) + 1, shape, generator=generator)
    return steps.float() / 2**bits


def in_domain_layer(hidden: int, tau: float, seed: int) -> tuple[ThresholdRNN, torch.Tensor]:
    """A layer and inputs whose every step's current lies in [0, theta = 1]: the theorem's domain.

    Input currents in [0, 1/2], recurrent weights >= 0 with row sums <= 1/2, so c + W_h s <= 1.
    """
    g = torch.Generator().manual_seed(seed)
    layer = ThresholdRNN(hidden, hidden, lambda: ThresholdReLU(1.0, enabled=True), tau=tau)
    with torch.no_grad():
        layer.input.weight.copy_(torch.eye(hidden))
        layer.input.bias.zero_()
        w = dyadic((hidden, hidden), 0.0, 0.25, bits=4, generator=g)
        w = w * (w.sum(1, keepdim=True) <= 0.5)  # keep rows whose sum is <= 1/2, zero the others
        layer.recurrent.weight.copy_(w)
    x = dyadic((3, 7, hidden), 0.0, 0.5, bits=3, generator=g)
    assert float(x.max() + layer.recurrent.weight.detach().sum(1).max()) <= 1.0  # the precondition holds
    return layer, x


@pytest.mark.parametrize("tau", [1.0, 0.75, 0.5, 0.0])
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_spike_counts_equal_the_quantised_rnn_exactly(tau, shift):
    for k in (1, 2, 4, 8, 16):
        layer, x = in_domain_layer(5, tau, seed=k)
        with torch.no_grad():
            counts = recurrent_if(layer.input(x), layer.recurrent.weight, 1.0, tau, k, v_shift=shift)
        expected, _ = layer.quantised(x, 1.0, k, offset=shift)
        assert torch.equal(counts, expected * k), (tau, shift, k)


def test_outside_the_domain_an_early_spike_is_not_taken_back():
    """A carried residue above theta fires at once; negative current later cannot undo it: the IF count
    (1) exceeds the quantiser's floor(K u / theta) (0). The documented departure, not a bug."""
    layer = single_unit_layer(1.0)
    x = torch.tensor([2.0, -0.75]).view(1, 2, 1)  # word 1 carries theta x K above the clip, word 2 is negative
    counts = recurrent_if(layer.input(x).detach(), None, 1.0, 1.0, 2)
    quantised, _ = layer.quantised(x, 1.0, 2)
    assert counts.flatten().tolist() == [2, 1]
    assert (quantised * 2).flatten().tolist() == [2, 0]


def signed_domain_layer(hidden: int, tau: float, seed: int) -> tuple[ThresholdRNN, torch.Tensor]:
    """Weights and inputs of both signs with |every step's current| <= theta = 1 (signed spikes included):
    |input current| <= 1/2 and the absolute row sums of W_h <= 1/2. Remaining values of both signs and
    well above theta are carried (the plain IF neuron's trouble)."""
    g = torch.Generator().manual_seed(seed)
    layer = ThresholdRNN(hidden, hidden, lambda: ThresholdReLU(1.0, enabled=True), tau=tau)
    with torch.no_grad():
        layer.input.weight.copy_(torch.eye(hidden))
        layer.input.bias.zero_()
        w = dyadic((hidden, hidden), -0.125, 0.125, bits=4, generator=g)
        w = w * (w.abs().sum(1, keepdim=True) <= 0.5)
        layer.recurrent.weight.copy_(w)
    x = dyadic((3, 9, hidden), -0.5, 0.5, bits=3, generator=g)
    return layer, x


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_signed_neurons_equal_the_quantised_rnn_for_currents_of_both_signs(tau, shift):
    for k in (1, 2, 4, 8):
        layer, x = signed_domain_layer(6, tau, seed=10 + k)
        with torch.no_grad():
            signed = recurrent_if(layer.input(x), layer.recurrent.weight, 1.0, tau, k, v_shift=shift, signed=True)
        expected, _ = layer.quantised(x, 1.0, k, offset=shift)
        assert torch.equal(signed, expected * k), (tau, shift, k)


def test_signed_neuron_takes_back_a_spike_the_next_step_cancels():
    """Two units, K = 2, theta = 1, tau = 1: unit A fires at the 2nd step of word 1, and its spike
    reaches unit B (weight -1) at the 2nd step of word 2. B's current in word 2 is +0.5 then -0.5 (within
    [-theta, theta]); with the 0.5 it carries from word 1 it fires at once. Its word's charge is
    0.5 + 0.5 - 0.5 = 0.5 < theta: the quantised RNN says 0 spikes (u = 0.5 - 0.5 + 0.25 = 0.25, K u = 0.5)."""
    layer = ThresholdRNN(2, 2, lambda: ThresholdReLU(1.0, enabled=True), tau=1.0)
    with torch.no_grad():
        layer.input.weight.copy_(torch.eye(2))
        layer.input.bias.zero_()
        layer.recurrent.weight.copy_(torch.tensor([[0.0, 0.0], [-1.0, 0.0]]))
        x = torch.tensor([[[0.5, 0.75], [0.0, 0.5]]])
        c, w = layer.input(x), layer.recurrent.weight
        quantised, _ = layer.quantised(x, 1.0, 2)
        assert (quantised * 2)[0].tolist() == [[1, 1], [0, 0]]
        assert recurrent_if(c, w, 1.0, 1.0, 2, signed=True)[0].tolist() == [[1, 1], [0, 0]]
        assert recurrent_if(c, w, 1.0, 1.0, 2)[0].tolist() == [[1, 1], [0, 1]]  # the plain IF neuron keeps it


def tiny_sentiment_rnn(pool: str = "mean", tau: float = 1.0) -> SentimentRNN:
    """A SentimentRNN inside the theorem's domain: non-negative dyadic embeddings and weights."""
    torch.manual_seed(0)
    model = SentimentRNN(
        vocab_size=6, num_classes=3, embed_dim=2, hidden_size=3, tau=tau, pool=pool, embed_dropout=0.0
    ).eval()
    set_threshold_enabled(model, True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.embedding.weight.copy_(dyadic((6, 2), 0.0, 0.5, generator=g))
        model.embedding.weight[0].zero_()
        model.rnn.input.weight.copy_(dyadic((3, 2), 0.0, 0.5, generator=g))
        model.rnn.input.bias.copy_(dyadic((3,), 0.0, 0.125, generator=g))
        model.rnn.recurrent.weight.copy_(dyadic((3, 3), 0.0, 0.125, generator=g))
        model.classifier.weight.copy_(dyadic((3, 3), -1.0, 1.0, generator=g))
        model.classifier.bias.copy_(dyadic((3,), -0.25, 0.25, generator=g))
    return model


def text_batch():
    ids = torch.tensor([[2, 3, 4, 5, 2], [5, 5, 0, 0, 0], [0, 0, 0, 0, 0]])
    return ids, torch.tensor([5, 2, 0])  # the third sentence is empty: one silent word


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_converted_network_is_the_quantised_rnn(pool):
    model = tiny_sentiment_rnn(pool)
    ids, lengths = text_batch()
    snn = convert_recurrent(model, {RECURRENT_KEY: 1.0, OUTPUT_KEY: 1.0}, shift="none")
    k = 8
    out = snn((ids, lengths), k, loops=[1, 4])
    e = model.embedding(ids[:, :5])
    o_q, _ = model.rnn.quantised(e, 1.0, k)
    mask = out.mask.unsqueeze(-1)
    assert torch.equal(out.counts * mask, o_q * k * mask)
    from lightning_snn.spiking_recurrent import pool_words

    logits_q = model.classifier(pool_words(o_q, lengths.clamp(min=1), pool))
    torch.testing.assert_close(out.analog, logits_q, rtol=0, atol=1e-6)
    assert out.spiking.shape == (2, 3, 3)
    assert bool((out.spiking[1] >= out.spiking[0]).all())  # counts only grow with the loops


def test_looped_output_counts_floor_of_the_looped_charge():
    """Non-negative currents <= theta_o per step: the count after l loops is floor(l * charge / theta_o)."""
    g = torch.Generator().manual_seed(0)
    currents = dyadic((6, 4, 3), 0.0, 1.0, bits=3, generator=g)
    mask = torch.ones(6, 4, dtype=torch.bool)
    counts = looped_if(currents, mask, 1.0, 5)
    charge = currents.sum(0)
    for loop in range(1, 6):
        assert torch.equal(counts[loop - 1], torch.floor(loop * charge))


def test_looped_output_padding_is_replay_of_each_sentence_alone():
    g = torch.Generator().manual_seed(2)
    currents = dyadic((5, 2, 3), -1.0, 2.0, bits=3, generator=g)  # signs and sizes the theorem excludes
    mask = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.bool)
    together = looped_if(currents, mask, 1.0, 3)
    alone = looped_if(currents[:2, 1:], mask[:2, 1:], 1.0, 3)
    assert torch.equal(together[:, 1], alone[:, 0])


# ---- what the converter refuses, by name ---------------------------------------------------------------
class LSTMClassifier(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.encoder = cell(4, 8, batch_first=True)
        self.head = nn.Linear(8, 5)

    def forward(self, batch):
        out, _ = self.encoder(self.embedding(batch[0]))
        return self.head(torch.relu(out[:, -1]))


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
def test_unknown_recurrent_layers_are_refused_by_name(cell):
    model = LSTMClassifier(cell)
    assert is_recurrent(model)
    with pytest.raises(ConversionError, match=rf"'encoder'.*torch\.nn\.modules\.rnn\.{cell.__name__}"):
        check_recurrent_convertible(model)
    batches = [((torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 3])), torch.tensor([0, 1]))]
    with pytest.raises(ConversionError, match=cell.__name__):  # through the general entry point too
        evaluate_conversion(model, batches, batches, [4])


def test_subclasses_and_extra_layers_are_refused_by_name():
    class MyRNN(SentimentRNN):
        pass

    with pytest.raises(ConversionError, match="not a MyRNN"):
        check_recurrent_convertible(MyRNN(vocab_size=5))
    model = SentimentRNN(vocab_size=5)
    model.norm = nn.LayerNorm(4)
    with pytest.raises(ConversionError, match=r"'norm' \(LayerNorm\)"):
        check_recurrent_convertible(model)
    wrapper = nn.Sequential(SentimentRNN(vocab_size=5))
    with pytest.raises(ConversionError, match="holds one at '0'"):
        check_recurrent_convertible(wrapper)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"shift": "bias"}, "bias shift"),
        ({"calibration": "percentile"}, "not implemented"),
        ({"correction": "light"}, "not implemented"),
        ({"neuron": "lif"}, "not implemented"),
        ({"time_chunk": 4}, "one word window"),
    ],
)
def test_settings_that_do_not_apply_are_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        check_recurrent_settings(tiny_sentiment_rnn(), **setting)


def test_output_loops_are_refused_for_an_image_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    batches = [(torch.rand(2, 4), torch.tensor([0, 1]))]
    with pytest.raises(ValueError, match="recurrent models only"):
        evaluate_conversion(model, batches, batches, [4], output_loops=[2])


# ---- calibration and the whole evaluation -------------------------------------------------------------
def test_calibration_takes_the_max_over_real_words_only():
    model = tiny_sentiment_rnn()
    ids, lengths = text_batch()
    thresholds = calibrate_recurrent_thresholds(model, [((ids, lengths), torch.zeros(3, dtype=torch.long))])
    o, _, lens = model.features((ids, lengths))
    valid = torch.arange(o.shape[1]).view(1, -1, 1) < lens.view(-1, 1, 1)
    assert thresholds[RECURRENT_KEY] == float(o[valid.expand_as(o)].max())
    assert thresholds[OUTPUT_KEY] == float(model((ids, lengths)).max())
    lam = calibrate_recurrent_thresholds(model, [(ids, lengths)], method="lambda")
    assert lam[RECURRENT_KEY] == 1.0  # the clip y_th, while the clip is on


def test_report_of_a_trained_rnn_and_its_snn(tmp_path):
    """A tiny RNN trained for a few steps on random sentences: the analog SNN approaches the RNN with K."""
    torch.manual_seed(0)
    model = create_model("rnn", vocab_size=30, num_classes=3, embed_dim=8, hidden_size=16, embed_dropout=0.0)
    set_threshold_enabled(model, True)
    ids = torch.randint(2, 30, (96, 7))
    lengths = torch.randint(0, 8, (96,))
    ids[torch.arange(7).view(1, -1) >= lengths.view(-1, 1)] = 0
    y = (ids == 5).any(1).long() + (ids == 6).any(1).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model((ids, lengths)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    batches = [((ids[i : i + 32], lengths[i : i + 32]), y[i : i + 32]) for i in range(0, 96, 32)]
    report = evaluate_recurrent_conversion(
        model, batches, batches, [1, 32], readout="spiking", output_loops=[1, 8], diagnostics=True
    )
    assert report.num_test_images == 96 and report.calibration_images == 96
    assert report.ann_correct == int((model((ids, lengths)).argmax(-1) == y).sum())
    assert report.snn_acc == {k: report.spiking_acc[k][8] for k in (1, 32)}
    errors = report.to_json()["layer_errors"]
    assert errors["32"]["rnn"]["mae"] < errors["1"]["rnn"]["mae"]
    data = report.to_json()
    assert data["recurrent"]["time_axis"] == "steps_per_word"
    signed = evaluate_recurrent_conversion(model, batches, batches, [4], neuron="signed", diagnostics=True)
    assert signed.neuron == "signed" and signed.ann_correct == report.ann_correct
    assert set(data["firing_rates"]["32"]["layers"]) <= {"rnn", "<output>"}
    assert "per sentence" in report.table()


def test_make_activation_relu_never_clips_in_the_rnn():
    model = SentimentRNN(vocab_size=5, act_layer=make_activation("relu"))
    assert not bool(model.rnn.act.threshold_enabled)
    u = torch.tensor([-2.0, 0.5, 3.0])
    assert torch.equal(quantise(u, 1.0, 4), torch.tensor([0.0, 0.5, 1.0]))
