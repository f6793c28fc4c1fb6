"""Recurrent sentence classifiers made for conversion (the paper's appendix A.4).

* :class:`ThresholdRNN`: the recurrent layer whose hidden unit already behaves like an IF neuron
  with soft reset: threshold ReLU, with the "remaining value" ``u - h(u)`` (what lies above the
  clip, or below 0) kept as hidden state, attenuated by ``tau``, and added to the next word's
  pre-activation. The recurrence and its exact relation to the SNN are written down in
  :mod:`lightning_snn.spiking_recurrent`.
* :class:`SentimentRNN` (registered as ``"rnn"``): learned word embeddings -> ThresholdRNN ->
  mean (or last) over the words -> linear readout.

The activation is injected as ``act_layer`` (a :class:`~lightning_snn.activations.ThresholdReLU`
factory), so the LightningModule's ReLU warm-up switches it exactly as in the CNNs; with
``activation: relu`` the clip never switches on (the paper's plain-ReLU source RNN, whose remaining
value is then only the part below 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_snn.activations import ActLayer, ThresholdReLU, resolve_act_layer
from lightning_snn.models.layers import scaled
from lightning_snn.models.registry import check_model_args, register_model
from lightning_snn.spiking_recurrent import POOLS, pool_words, trim_batch


def check_tau(tau: float) -> float:
    """``tau`` in [0, 1]: a non-negative attenuation (rule 2 of appendix A.4)."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau <= 1.0:
        raise ValueError(
            f"tau must be a number in [0, 1] (the attenuation of the carried hidden state: 0 forgets it, 1 keeps "
            f"it whole), got {tau!r}."
        )
    return float(tau)


def quantise(u: torch.Tensor, v_threshold: float | torch.Tensor, levels: int, offset: float = 0.0) -> torch.Tensor:
    """``q_K(u) = theta / K * clamp(floor(K u / theta + offset), 0, K)``: what an IF neuron's spike count
    over ``K = levels`` steps encodes (``offset`` 1/2 with the membrane shift)."""
    return torch.floor(u * (levels / v_threshold) + offset).clamp(0, levels) * (v_threshold / levels)


class ThresholdRNN(nn.Module):
    """The source recurrent layer: ``u_t = W_x x_t + b + W_h o_{t-1} + tau r_{t-1}``, ``o_t = h(u_t)``,
    ``r_t = u_t - o_t``.

    Args:
        input_size: features of each word's input.
        hidden_size: recurrent units.
        act_layer: factory of the activation ``h`` (a ThresholdReLU).
        tau: attenuation in [0, 1] of the remaining value carried to the next word.
        recurrent: with recurrent weights ``W_h`` (False: the units see their own remaining value only).
    """

    def __init__(
        self, input_size: int, hidden_size: int, act_layer: ActLayer, tau: float = 0.5, recurrent: bool = True
    ) -> None:
        super().__init__()
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False) if recurrent else None
        self.act = act_layer()
        if not isinstance(self.act, ThresholdReLU) or self.act.shift:
            raise TypeError(
                f"ThresholdRNN's activation must be a ThresholdReLU without shift (activation threshold_relu or "
                f"relu), got {self.act!r}: its remaining value u - h(u) is what the SNN's membrane carries."
            )
        self.tau = check_tau(tau)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, L, input_size]`` -> (outputs ``o`` ``[B, L, H]``, pre-activations ``u`` ``[B, L, H]``)."""
        return self.run(self.input(x), self.act)

    def run(self, currents: torch.Tensor, activation) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrence on given input currents ``W_x x + b`` ``[B, L, H]`` with activation ``h``."""
        batch, words, hidden = currents.shape
        o = currents.new_zeros(batch, hidden)
        r = currents.new_zeros(batch, hidden)
        outputs, pre = [], []
        for t in range(words):
            u = currents[:, t] + self.tau * r
            if self.recurrent is not None:
                u = u + self.recurrent(o)
            o = activation(u)
            r = u - o
            outputs.append(o)
            pre.append(u)
        return torch.stack(outputs, 1), torch.stack(pre, 1)

    @torch.no_grad()
    def quantised(
        self, x: torch.Tensor, v_threshold: float, steps_per_word: int, offset: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference of the exact correspondence: this layer with ``h`` replaced by ``q_K``
        (:func:`quantise`, ``K = steps_per_word``); its outputs times ``K / theta`` are the SNN's
        spike counts whenever every step's input current is in ``[0, theta]``."""
        return self.run(self.input(x), lambda u: quantise(u, v_threshold, steps_per_word, offset))


class TextClassifier(nn.Module):
    """What the text models share: embedding -> ``self.rnn`` (set by the subclass) -> pool over the
    words -> dropout -> linear readout. Their input is a text batch ``(ids [B, L], lengths [B])``
    (:class:`lightning_snn.text_data.TokenBatch`); index 0 is padding, a zero vector.

    Its keywords are every text model's (a subclass takes them as ``**settings`` and adds its
    recurrent layer's own); they are checked here, once, before anything is built.

    Args:
        vocab_size: rows of the embedding (index 0 = padding, a zero vector).
        num_classes: output classes.
        embed_dim: embedding size.
        hidden_size: recurrent units (times ``width``).
        width: multiplier of ``hidden_size``.
        tau: attenuation of the recurrent layer's carried state at each word, in [0, 1].
        pool: ``"mean"`` over the words or the ``"last"`` word's output.
        embed_dropout: dropout on the embeddings (training only).
        dropout: dropout before the readout (training only).
        recurrent: with recurrent weights ``W_h``.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        num_classes: int = 5,
        embed_dim: int = 128,
        hidden_size: int = 256,
        width: float = 1.0,
        tau: float = 0.5,
        pool: str = "mean",
        embed_dropout: float = 0.5,
        dropout: float = 0.0,
        recurrent: bool = True,
    ) -> None:
        check_text_model_args(vocab_size, width, num_classes, embed_dim, pool)
        super().__init__()
        hidden = scaled(hidden_size, width)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        self.pool = pool
        # what the subclass builds its recurrent layer from (after the readout: the seeded weights' order)
        self.layer_args = {"input_size": embed_dim, "hidden_size": hidden, "tau": tau, "recurrent": recurrent}

    def embed(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings ``[B, L, E]`` of the batch trimmed to its longest sentence, lengths >= 1)."""
        ids, lengths = trim_batch(batch)
        return self.embed_dropout(self.embedding(ids)), lengths

    def readout(self, per_word: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits from the recurrent layer's per-word outputs ``[B, L, H]``."""
        return self.classifier(self.dropout(pool_words(per_word, lengths, self.pool)))


class SentimentRNN(TextClassifier):
    """Embedding -> :class:`ThresholdRNN` -> pool over the words -> linear readout.

    Args:
        act_layer: the activation factory (default: threshold ReLU, clip 1, off until switched on).
        **settings: the text model's settings, see :class:`TextClassifier` (``vocab_size``,
            ``hidden_size``, ``tau``, ``pool``, ...).
    """

    def __init__(self, act_layer: ActLayer | None = None, **settings) -> None:
        super().__init__(**settings)
        self.rnn = ThresholdRNN(act_layer=resolve_act_layer(act_layer), **self.layer_args)

    def features(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(outputs ``o`` ``[B, L, H]``, pre-activations ``u``, lengths) of the recurrent layer."""
        e, lengths = self.embed(batch)
        o, u = self.rnn(e)
        return o, u, lengths

    def forward(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        o, _, lengths = self.features(batch)
        return self.readout(o, lengths)


def check_text_model_args(vocab_size: int | None, width: float, num_classes: int, embed_dim: int, pool: str) -> None:
    """The settings every text model checks before building anything."""
    if vocab_size is None:
        raise ValueError(
            "vocab_size is required: it is the size of the training vocabulary, which the text DataModule "
            "(lightning_snn.text_data.SSTDataModule) gives the CLI; in Python pass len(datamodule.vocab)."
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 3:
        raise ValueError(f"vocab_size must be an int >= 3 (<pad>, <unk> and a word), got {vocab_size!r}.")
    check_model_args(width, num_classes)
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
        raise ValueError(f"embed_dim must be an int >= 1, got {embed_dim!r}.")
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {list(POOLS)}.")


@register_model("rnn")
def rnn(**kwargs) -> SentimentRNN:
    """The source RNN of appendix A.4 (see :class:`SentimentRNN` for its settings)."""
    return SentimentRNN(**kwargs)
