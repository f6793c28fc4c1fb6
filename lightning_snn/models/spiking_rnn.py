"""The directly trained baseline of appendix A.4: a spiking RNN trained with a surrogate gradient.

:class:`SpikingSentimentRNN` (registered as ``"spiking_rnn"``) has the same layers and sizes as
:class:`~lightning_snn.models.rnn.SentimentRNN` (embedding, input projection, recurrent weights,
readout), but its recurrent layer *is* the spiking layer the converted SNN uses
(:func:`lightning_snn.spiking_recurrent.recurrent_if`: IF neurons, soft reset, ``steps_per_word``
steps per word, the membrane attenuated by ``tau`` at each word boundary, the previous word's
spikes as recurrent input). It is trained end to end with backpropagation through all the steps
(BPTT), the spike's step function replaced by a surrogate derivative in the backward pass
(:mod:`lightning_snn.surrogate`); its readout during training is the analog one,
``W_o pool(theta n / K) + b_o``.

The activation settings of the LightningModule do not apply to it (there is no ReLU): ``y_th`` is
its firing threshold ``theta``; use ``activation: relu`` and ``relu_warmup_epochs: 0`` in its config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_snn.activations import ActLayer, ThresholdReLU, resolve_act_layer
from lightning_snn.models.registry import register_model
from lightning_snn.models.rnn import TextClassifier, check_tau
from lightning_snn.spiking_recurrent import check_steps_per_word, recurrent_if
from lightning_snn.surrogate import check_surrogate, spike_function


class SpikingRNNLayer(nn.Module):
    """IF neurons over ``steps_per_word`` steps per word, trained through a surrogate gradient.

    Args:
        input_size, hidden_size: as :class:`~lightning_snn.models.rnn.ThresholdRNN`.
        v_threshold: the firing threshold ``theta``.
        tau: the membrane's attenuation at each word boundary, in [0, 1].
        steps_per_word: ``K``, the steps it is trained (and normally run) with.
        surrogate: ``"fast_sigmoid"`` or ``"arctan"``; ``alpha`` its sharpness (None: its default).
        recurrent: with recurrent weights ``W_h``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        v_threshold: float = 1.0,
        tau: float = 0.5,
        steps_per_word: int = 8,
        surrogate: str = "fast_sigmoid",
        alpha: float | None = None,
        recurrent: bool = True,
    ) -> None:
        super().__init__()
        if not v_threshold > 0:
            raise ValueError(f"the firing threshold (y_th) must be > 0, got {v_threshold}.")
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False) if recurrent else None
        self.v_threshold = float(v_threshold)
        self.tau = check_tau(tau)
        self.steps_per_word = check_steps_per_word(steps_per_word)
        self.surrogate, self.alpha = surrogate, check_surrogate(surrogate, alpha)
        self._spike = spike_function(surrogate, self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, input_size]`` -> spike counts per word ``[B, L, H]``."""
        return recurrent_if(
            self.input(x),
            None if self.recurrent is None else self.recurrent.weight,
            self.v_threshold,
            self.tau,
            self.steps_per_word,
            spike_fn=self._spike,
        )

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, tau={self.tau}, steps_per_word={self.steps_per_word}, "
            f"surrogate={self.surrogate}, alpha={self.alpha}"
        )


class SpikingSentimentRNN(TextClassifier):
    """Embedding -> :class:`SpikingRNNLayer` -> pool of the rates ``theta n / K`` -> linear readout.

    Args:
        act_layer: only gives the firing threshold, its ``y_th`` (a ThresholdReLU without shift;
            default: ``relu`` with ``y_th`` 1).
        steps_per_word / surrogate / alpha: as :class:`SpikingRNNLayer`.
        **settings: the text model's settings, those of
            :class:`~lightning_snn.models.rnn.SentimentRNN` (see
            :class:`~lightning_snn.models.rnn.TextClassifier`).
    """

    def __init__(
        self,
        act_layer: ActLayer | None = None,
        steps_per_word: int = 8,
        surrogate: str = "fast_sigmoid",
        alpha: float | None = None,
        **settings,
    ) -> None:
        probe = resolve_act_layer(act_layer, default="relu")()
        if not isinstance(probe, ThresholdReLU) or probe.shift:
            raise TypeError(
                f"a spiking RNN takes its threshold from a ThresholdReLU's y_th (activation relu), got {probe!r}."
            )
        super().__init__(**settings)
        self.rnn = SpikingRNNLayer(
            v_threshold=probe.y_th, steps_per_word=steps_per_word, surrogate=surrogate, alpha=alpha, **self.layer_args
        )

    def forward(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        e, lengths = self.embed(batch)
        counts = self.rnn(e)
        return self.readout(counts * (self.rnn.v_threshold / self.rnn.steps_per_word), lengths)


@register_model("spiking_rnn")
def spiking_rnn(**kwargs) -> SpikingSentimentRNN:
    """The surrogate-gradient spiking RNN of appendix A.4's comparison (see :class:`SpikingSentimentRNN`)."""
    return SpikingSentimentRNN(**kwargs)
