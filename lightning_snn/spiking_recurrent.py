"""The spiking recurrent network of the paper's appendix A.4, in plain PyTorch.

**The source RNN** (:class:`lightning_snn.models.rnn.ThresholdRNN`), per sentence of ``n`` words,
``t = 1 .. n``, with ``o_0 = r_0 = 0``::

    c_t = W_x e_t + b                      input current of word t (e_t its embedding)
    u_t = c_t + W_h o_{t-1} + tau r_{t-1}  pre-activation
    o_t = h(u_t)                           h = clamp(., 0, theta), the threshold ReLU (ReLU in warm-up)
    r_t = u_t - o_t                        the "remaining value", carried as hidden state

**The SNN** (:func:`recurrent_if`) runs ``K`` time steps per word with integrate-and-fire neurons
(soft reset, threshold ``theta``, spike amplitude ``theta``). During word ``t`` the neuron gets,
at step ``k``, the constant current ``c_t`` plus ``W_h theta s_{t-1,k}``: the spikes of the
previous word's window, delayed by one word (``K`` steps), so the recurrent synapses see what the
RNN's ``W_h o_{t-1}`` sees. At each word boundary the membrane is attenuated around the shift
point ``v_s`` (0, or ``theta / 2`` with the membrane shift)::

    v <- v_s + tau (v - v_s)      (v = v_s at the sentence's start)
    for k = 1 .. K:  v += I_{t,k};  s_{t,k} = [v >= theta];  v -= theta s_{t,k}

**The exact correspondence.** Let ``n_t`` be the spikes of word ``t`` and write, in RNN units,
``o'_t = theta n_t / K`` and ``r'_t = (v_end_t - v_s) / K`` (``v_end_t``: the membrane after the
word). Summing the ``K`` steps of the window, the charge of word ``t`` is
``K c_t + theta W_h n_{t-1}``, so ``u'_t = c_t + W_h o'_{t-1} + tau r'_{t-1}`` and ``r'_t = u'_t - o'_t``:
the RNN's recurrence with ``o'`` for ``o``. If, in addition, every step's input current lies in
``[0, theta]`` and ``v_s`` in ``[0, theta)``, the membrane stays in ``[0, theta)`` after every step
(the start of each word is a convex combination of ``v_s`` and the last word's end, both there), so
the word's spikes are exactly ``n_t = floor((v_start_t + charge_t) / theta) = floor(K u'_t / theta + beta)``
(``beta = v_s / theta``: 0, or 1/2 with the membrane shift). Hence, for **every** ``tau`` in [0, 1]
and every ``K``::

    theta n_t / K = q_K(u'_t),   q_K(u) = theta / K * clamp(floor(K u / theta + beta), 0, K),

the RNN whose threshold ReLU is replaced by the ``K``-level quantiser ``q_K`` (its remaining value
``u - q_K(u)`` then includes the quantisation error, which the membrane carries). Where ``K u / theta``
is an integer for every word (dyadic hand-made cases, ``beta = 0``), ``q_K = h`` and the spike counts
equal the threshold-ReLU RNN's activations times ``K / theta``. With ``tau = 1`` the whole sentence
is one integration: the error of each word is paid back by the next (a sigma-delta loop). Tested in
``tests/test_recurrent_conversion.py``. Outside the condition (negative currents after early spikes,
currents above ``theta`` per step) an IF neuron's count departs from ``q_K``: that is the conversion
error the accuracy measures.

**Signed neurons** (``neuron: signed``, beyond the paper, as for the CNNs): a neuron whose membrane
is below 0 while its count in the current word is positive fires a negative spike (``-theta``,
``v += theta``). If every step's input current satisfies ``|I| <= theta`` (no sign condition, any
carried membrane), then after a positive count the membrane stays in ``[0, theta)``, and the word's net
count is exactly ``clamp(floor((v_start + charge) / theta), 0, K)``: the SNN equals the quantised RNN
``q_K`` for every ``tau``, also where the RNN carries large remaining values of either sign (where the
plain IF neuron spends a carried charge at its maximum rate whatever the word's current says).
A negative spike is an event too (counted in the synaptic operations).

**The readout.** The RNN's logits are ``z = W_o pool(o) + b_o`` (``pool`` = mean over the words, or the
last word). The analog readout of the SNN gives ``W_o pool(o') + b_o`` from the spike counts; the
spiking readout (the paper's rule 4) is a layer of IF neurons with threshold ``theta_o`` (the largest
logit on the calibration set: threshold balancing) whose input, ``W_o theta s + b_o`` at each step of
the pooled windows, is **looped**: replayed ``L`` times in a row, so that it fires about
``L K n z / theta_o`` spikes; the class with the most spikes wins (ties: the lowest class index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: How the words' outputs reach the readout: their mean, or the last word's.
POOLS = ("mean", "last")

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def trim_batch(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, L], lengths [B])`` cut to the batch's longest sentence; an empty sentence
    counts as one silent word (the pad index, whose embedding is zero), so every sentence has
    at least one step for the network to answer from."""
    ids, lengths = batch[0], batch[1]
    if ids.dim() != 2 or lengths.dim() != 1 or lengths.shape[0] != ids.shape[0]:
        raise ValueError(
            f"a text batch is (ids [B, L], lengths [B]); got ids {tuple(ids.shape)} and lengths {tuple(lengths.shape)}."
        )
    lengths = lengths.clamp(min=1)
    longest = int(lengths.max()) if lengths.numel() else 1
    if longest > ids.shape[1]:
        raise ValueError(f"a sentence length {longest} exceeds the padded width {ids.shape[1]} of the batch.")
    return ids[:, :longest], lengths


def word_mask(lengths: torch.Tensor, words: int) -> torch.Tensor:
    """``[B, words]`` bool: True where the word exists."""
    return torch.arange(words, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def pool_words(x: torch.Tensor, lengths: torch.Tensor, mode: str) -> torch.Tensor:
    """``[B, L, H]`` -> ``[B, H]``: the mean over each sentence's words, or its last word."""
    if mode == "mean":
        mask = word_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        return (x * mask).sum(1) / lengths.unsqueeze(1).to(x.dtype)
    if mode == "last":
        return x[torch.arange(x.shape[0], device=x.device), lengths - 1]
    raise ValueError(f"unknown pool {mode!r}; choose one of {list(POOLS)}.")


def pooled_word_mask(pool: str, lengths: torch.Tensor, words: int) -> torch.Tensor:
    """``[B, words]`` bool: the words whose outputs reach the readout (all of them, or the last)."""
    if pool == "mean":
        return word_mask(lengths, words)
    return F.one_hot(lengths - 1, words).bool()


def check_steps_per_word(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"steps per word must be an int >= 1, got {k!r}.")
    return k


def recurrent_if(
    currents: torch.Tensor,
    recurrent_weight: torch.Tensor | None,
    v_threshold: torch.Tensor | float,
    tau: float,
    steps_per_word: int,
    v_shift: torch.Tensor | float = 0.0,
    spike_fn: SpikeFn | None = None,
    on_window: Callable[[int, torch.Tensor], None] | None = None,
    signed: bool = False,
) -> torch.Tensor:
    """Run the spiking recurrent layer over a batch of sentences (see the module docstring).

    Args:
        currents: ``[B, L, H]`` input current of every word, ``W_x e_t + b``.
        recurrent_weight: ``W_h`` ``[H, H]``, or None for a layer without recurrent synapses.
        v_threshold: ``theta`` (a scalar or ``[H]``).
        tau: attenuation of the membrane at each word boundary, around ``v_shift``.
        steps_per_word: ``K``.
        v_shift: the shift point ``v_s`` (the membrane at the sentence's start).
        spike_fn: ``x -> spikes`` for ``x = v - theta``; None = the exact step without autograd
            (evaluation); a surrogate (:func:`lightning_snn.surrogate.spike_function`) to train.
        on_window: called as ``on_window(t, spikes)`` with word ``t``'s spikes ``[K, B, H]``.
        signed: signed IF neurons (evaluation only): a neuron whose membrane is below 0 while its
            count in the current word is positive fires a negative spike (``-theta``, ``v += theta``),
            taking back an earlier spike of the word; see the module docstring.

    Returns:
        ``[B, L, H]`` spike counts per word, net of negative spikes (words past a sentence's end are
        simulated too; mask them).
    """
    k_steps = check_steps_per_word(steps_per_word)
    if signed and spike_fn is not None:
        raise ValueError("signed neurons are an evaluation option: they have no surrogate gradient here.")
    batch, words, hidden = currents.shape
    theta = torch.as_tensor(v_threshold, dtype=currents.dtype, device=currents.device)
    v_s = torch.as_tensor(v_shift, dtype=currents.dtype, device=currents.device)
    v = v_s.expand(batch, hidden).clone()
    w_rec = None if recurrent_weight is None else recurrent_weight * theta.reshape(-1, 1).T  # W_h diag(theta)
    previous: torch.Tensor | None = None  # last word's spikes [K, B, H]
    counts = []
    for t in range(words):
        if t > 0:
            v = v_s + tau * (v - v_s)
        drive = currents[:, t].unsqueeze(0)  # the same at every step of the window
        if w_rec is not None and previous is not None:
            drive = drive + F.linear(previous, w_rec)
        else:
            drive = drive.expand(k_steps, batch, hidden)
        spikes = []
        count = torch.zeros_like(v) if signed else None  # this word's net count so far
        for k in range(k_steps):
            v = v + drive[k]
            if spike_fn is not None:
                s = spike_fn(v - theta)
            elif signed:
                s = (v >= theta).to(v.dtype) - ((v < 0) & (count > 0)).to(v.dtype)
                count = count + s
            else:
                s = (v >= theta).to(v.dtype)
            v = v - theta * s
            spikes.append(s)
        window = torch.stack(spikes)
        if on_window is not None:
            on_window(t, window)
        counts.append(window.sum(0))
        previous = window
    return torch.stack(counts, 1)


@torch.no_grad()
def looped_if(
    currents: torch.Tensor, mask: torch.Tensor, v_threshold: torch.Tensor | float, loops: int
) -> torch.Tensor:
    """Spike counts of IF output neurons (soft reset, starting at 0) whose input is replayed ``loops`` times.

    Args:
        currents: ``[S, B, C]`` input current of each step.
        mask: ``[S, B]`` bool: the steps that exist for each sample (a masked step changes nothing:
            replaying the padded block equals replaying each sample's own steps back to back).
        v_threshold: ``theta_o`` (scalar or ``[C]``).
        loops: ``L >= 1``.

    Returns:
        ``[loops, B, C]``: the cumulative count after each replay.
    """
    if isinstance(loops, bool) or not isinstance(loops, int) or loops < 1:
        raise ValueError(f"loops must be an int >= 1, got {loops!r}.")
    theta = torch.as_tensor(v_threshold, dtype=currents.dtype, device=currents.device)
    currents = currents * mask.unsqueeze(-1).to(currents.dtype)
    fire_mask = mask.unsqueeze(-1)
    v = torch.zeros_like(currents[0])
    count = torch.zeros_like(v)
    out = []
    for _ in range(loops):
        for step in range(currents.shape[0]):
            v += currents[step]
            s = ((v >= theta) & fire_mask[step]).to(v.dtype)
            v -= theta * s
            count += s
        out.append(count.clone())
    return torch.stack(out)


class SpikingOutput(NamedTuple):
    """What one simulation of :class:`SpikingSentimentNet` gives.

    Attributes:
        analog: ``[B, C]`` the analog readout ``W_o pool(theta n / K) + b_o``.
        spiking: ``[len(loops), B, C]`` the looped output neurons' spike counts after each loop count.
        counts: ``[B, L, H]`` spikes per word of the recurrent layer (net of negative spikes).
        mask: ``[B, L]`` the words that exist.
        events: ``[B, L, H]`` spike events per word, negative ones included (= ``counts`` for IF neurons).
    """

    analog: torch.Tensor
    spiking: torch.Tensor | None
    counts: torch.Tensor
    mask: torch.Tensor
    events: torch.Tensor


class SpikingSentimentNet(nn.Module):
    """The SNN of a sentence classifier: embedding -> spiking recurrent layer -> (looped) output layer.

    Built by :func:`lightning_snn.recurrent_conversion.convert_recurrent` from a trained model; its
    layers are copies. Word embeddings and the input projection stay analog (the input current,
    as the analog image of the CNN conversion), everything after them spikes.

    Args:
        embedding: the word embedding.
        input_layer: ``W_x, b`` (``nn.Linear``).
        recurrent_layer: ``W_h`` (``nn.Linear`` without bias), or None.
        readout: ``W_o, b_o`` (``nn.Linear``).
        v_threshold: ``theta`` of the recurrent layer (scalar).
        output_threshold: ``theta_o`` of the spiking output layer (None: analog readout only).
        tau: the membrane's attenuation per word.
        pool: ``"mean"`` or ``"last"``.
        v_shift: the shift point ``v_s`` (0, or ``theta / 2`` for the membrane shift).
        signed: signed neurons in the recurrent layer (see the module docstring); the output layer
            keeps the paper's IF neurons.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        input_layer: nn.Linear,
        recurrent_layer: nn.Linear | None,
        readout: nn.Linear,
        v_threshold: float,
        output_threshold: float | None,
        tau: float,
        pool: str = "mean",
        v_shift: float = 0.0,
        signed: bool = False,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {list(POOLS)}.")
        for name, value in (("v_threshold", v_threshold), ("output_threshold", output_threshold)):
            if value is not None and not (torch.isfinite(torch.as_tensor(value)) and value > 0):
                raise ValueError(
                    f"{name} is {value}: a threshold must be finite and > 0 (a dead layer, or a diverged network "
                    "whose activations are not finite?). Check the model and the calibration sentences."
                )
        self.embedding, self.input_layer, self.recurrent_layer, self.readout = (
            embedding,
            input_layer,
            recurrent_layer,
            readout,
        )
        self.register_buffer("v_threshold", torch.tensor(float(v_threshold)))
        self.output_threshold = None if output_threshold is None else float(output_threshold)
        self.tau, self.pool, self.v_shift, self.signed = float(tau), pool, float(v_shift), bool(signed)

    @torch.no_grad()
    def forward(self, batch: Sequence[torch.Tensor], steps_per_word: int, loops: Sequence[int] = ()) -> SpikingOutput:
        """Simulate ``steps_per_word`` steps per word; spiking counts after each of ``loops`` replays."""
        ids, lengths = trim_batch(batch)
        currents = self.input_layer(self.embedding(ids))
        mask = word_mask(lengths, ids.shape[1])
        theta = self.v_threshold
        # the readout's input current at every step of the pooled windows: [words, K, B, C]
        out_windows: list[torch.Tensor] = []
        events: list[torch.Tensor] = []
        pooled_words = pooled_word_mask(self.pool, lengths, ids.shape[1])

        def on_window(t: int, spikes: torch.Tensor) -> None:
            if self.signed:
                events.append(spikes.abs().sum(0))
            if loops and bool(pooled_words[:, t].any()):
                out_windows.append((F.linear(spikes * theta, self.readout.weight), t))

        counts = recurrent_if(
            currents,
            None if self.recurrent_layer is None else self.recurrent_layer.weight,
            theta,
            self.tau,
            steps_per_word,
            self.v_shift,
            on_window=on_window if loops or self.signed else None,
            signed=self.signed,
        )
        rates = counts * (theta / steps_per_word)
        analog = self.readout(pool_words(rates, lengths, self.pool))
        spiking = None
        if loops:
            if self.output_threshold is None:
                raise ValueError("this SNN has no output threshold: convert with a calibrated output layer to loop it.")
            bias = self.readout.bias if self.readout.bias is not None else 0.0
            steps = torch.cat([w + bias for w, _ in out_windows])  # [S, B, C]
            step_mask = torch.cat(
                [pooled_words[:, t].unsqueeze(0).expand(steps_per_word, -1) for _, t in out_windows]
            )  # [S, B]
            counts_per_loop = looped_if(steps, step_mask, self.output_threshold, max(loops))
            spiking = counts_per_loop[[int(lp) - 1 for lp in loops]]
        return SpikingOutput(analog, spiking, counts, mask, torch.stack(events, 1) if self.signed else counts)
