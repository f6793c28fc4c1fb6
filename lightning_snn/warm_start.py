"""Warm start: initialise a model from another run's weights, except the output layer.

The paper initialises its CIFAR-100 networks with the CIFAR-10 weights "except the output
layer" (A.1). The output layer is the model's last ``nn.Linear`` (every registered model
ends with one); every other tensor must match the checkpoint's exactly, key and shape, so a
checkpoint of another architecture or width is refused instead of half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lightning_snn.checkpoints import load_checkpoint

#: Prefix of the model's keys in a :class:`~lightning_snn.module.ConversionModule` state dict.
LIGHTNING_PREFIX = "model."


def head_name(model: nn.Module) -> str:
    """Qualified name of the output layer: the last ``nn.Linear`` in module order."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear output layer to leave out of the warm start.")
    return linears[-1]


def read_state_dict(path: str | Path, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The model's tensors from a Lightning ``.ckpt`` or a plain ``state_dict`` file.

    Lightning checkpoints keep the weights under ``"state_dict"`` with the LightningModule's
    attribute prefix (``model.``); that prefix is removed. A plain state dict of the model
    (no prefix) is returned as is.

    Args:
        path: the file.
        weights_only: load with torch's restricted unpickler, as every file this project writes
            allows; ``False`` (``--model.init_weights_only false``) unpickles anything, which can
            run code stored in the file: only for a file you trust
            (:func:`lightning_snn.checkpoints.load_checkpoint`).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"warm-start checkpoint {str(path)!r} not found: set model.init_from to the .ckpt of the run "
            "to start from (e.g. the CIFAR-10 run of the same arch and width), or to null."
        )
    obj = load_checkpoint(path, "model.init_from", weights_only, opt_in="--model.init_weights_only false")
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{str(path)!r} is neither a Lightning checkpoint nor a state dict of tensors; "
            "pass a .ckpt written by train.py fit or a file saved with torch.save(model.state_dict())."
        )
    state = dict(obj)
    if state and any(k.startswith(LIGHTNING_PREFIX) for k in state):
        # a LightningModule's state dict: keep the model's entries (metrics etc. are dropped)
        state = {k[len(LIGHTNING_PREFIX) :]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    return state


def load_except_head(
    model: nn.Module, path: str | Path, skip_head: bool = True, weights_only: bool = True
) -> list[str]:
    """Copy every tensor of the checkpoint at ``path`` into ``model``, except the output layer's.

    Args:
        model: the model to initialise (modified in place).
        path: a Lightning ``.ckpt`` (keys prefixed ``model.``) or a plain state dict file.
        skip_head: leave the output layer (the last ``nn.Linear``) as initialised, e.g. when
            the number of classes differs; ``False`` loads it too.
        weights_only: see :func:`read_state_dict`.

    Returns:
        The keys that were loaded.

    Raises:
        ValueError: the checkpoint's keys or shapes do not match the model's (another
            architecture or width), listing the missing, unexpected and mismatched keys.
    """
    source = read_state_dict(path, weights_only)
    target = model.state_dict()
    skipped: set[str] = set()
    if skip_head:
        head = head_name(model) + "."
        skipped = {k for k in set(target) | set(source) if k.startswith(head)}
    missing = sorted(k for k in target if k not in source and k not in skipped)
    unexpected = sorted(k for k in source if k not in target and k not in skipped)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in source and k not in skipped and source[k].shape != target[k].shape
    )
    if missing or unexpected or mismatched:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"

        raise ValueError(
            f"checkpoint {str(path)!r} is of another architecture than {type(model).__name__}: "
            f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}; mismatched shapes: "
            f"{show(mismatched)}. Pass a checkpoint of the same arch and width (only the output layer may differ)."
        )
    loaded = [k for k in target if k not in skipped]
    model.load_state_dict({k: source[k] for k in loaded}, strict=False)  # the head is the only gap
    return loaded
