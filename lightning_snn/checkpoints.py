"""Reading checkpoints: never run code from a file, name a damaged one, and keep the model
hyperparameters a checkpoint brings from silently replacing the ones asked for.

``torch.load`` unpickles, and with ``weights_only=False`` a file can run any code while it
loads (a crafted pickle calls ``os.system``). Every file this project writes, a Lightning
``.ckpt`` of ``train.py`` or a ``torch.save(model.state_dict())``, holds tensors, numbers,
strings and plain containers only, which torch's restricted loader (``weights_only=True``)
accepts. So every checkpoint is loaded with it; a file that needs more is refused, saying
what it holds, with an explicit opt-in for a file one trusts: Lightning's own ``--weights_only
false`` for ``--ckpt_path``, ``--model.init_weights_only false`` for ``--model.init_from``
(``weights_only=False`` in :func:`load_checkpoint`). See ``docs/TRUST.md``.

``test --ckpt_path`` (and ``fit --ckpt_path <file>``) builds the model from the checkpoint's
saved hyperparameters, laid over the parsed config by LightningCLI: a ``--model.arch vgg13``
on the command line would be dropped without a word. :func:`check_model_overrides` refuses
that, naming each key.
"""

from __future__ import annotations

import importlib
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

#: Model hyperparameters set by the CLI itself (linked from the DataModule), not by the user.
LINKED_KEYS = ("num_classes",)
#: Entries of Lightning's saved hyperparameters that are not constructor arguments.
PRIVATE_KEYS = ("_instantiator", "_class_path")

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, or holding more than weights."""


def load_checkpoint(path: str | Path, what: str, weights_only: bool = True, opt_in: str | None = None) -> Any:
    """``torch.load`` of ``path`` onto the CPU, safely and with errors that name the file.

    Args:
        path: the file.
        what: how the user named it, for messages (e.g. ``"--ckpt_path"``).
        weights_only: load with torch's restricted unpickler (tensors, numbers, strings, plain
            containers). ``False`` unpickles anything, which can run code stored in the file:
            only for a file you trust.
        opt_in: the setting that loads such a file anyway, named in the refusal.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is corrupt or incomplete, or (with ``weights_only``) holds
            Python objects beyond weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r}: no such checkpoint file.")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"{what} {str(path)!r}: cannot read it ({exc.strerror or exc}).") from exc
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError as exc:
            if "mmap can only be used" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=weights_only)  # an old (non-zip) file
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if weights_only and found and _importable(found.group(1)):
            hint = f"load it anyway with {opt_in}" if opt_in else "load it anyway with torch.load(weights_only=False)"
            raise CheckpointError(
                f"{what} {str(path)!r} holds Python objects beyond weights (it names {found.group(1)}), which only an "
                "unrestricted torch.load can create, by running code the file names: it was not loaded. Files written "
                "by this project (train.py checkpoints, torch.save(model.state_dict())) need no such objects. Only "
                f"if you trust this file (you made it yourself), {hint}."
            ) from exc
        raise _damaged(what, path, exc) from exc
    except Exception as exc:  # noqa: BLE001 (a damaged file fails anywhere in the unpickler: IndexError, OSError, ...)
        raise _damaged(what, path, exc) from exc


def _damaged(what: str, path: Path, exc: BaseException) -> CheckpointError:
    text = str(exc).strip()
    detail = text.splitlines()[0].split(". ")[0][:200] if text else type(exc).__name__
    return CheckpointError(
        f"{what} {str(path)!r} is corrupt or incomplete ({path.stat().st_size} bytes; torch.load: {detail}): a copy or "
        "a save cut short? Copy it again, or use another checkpoint (e.g. the run's previous epoch=*.ckpt)."
    )


def _importable(name: str) -> bool:
    """Whether a pickled global exists: a truncated old-format file names half a global."""
    module, _, attr = name.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except (ImportError, ValueError):
        return False


# ---- the model hyperparameters a checkpoint carries -------------------------------------------------
def saved_model_hparams(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments LightningCLI saved with the model (``hyper_parameters``)."""
    saved = dict(checkpoint.get("hyper_parameters") or {})
    for key in PRIVATE_KEYS:
        saved.pop(key, None)
    return saved


def given_keys(args: Iterable[str], section: str = "model") -> set[str] | None:
    """The ``--<section>.<key>`` keys on a command line (``init_args.`` / ``dict_kwargs.`` dropped,
    nested keys cut to their first part); ``None`` if the whole section is given (``--model X``)."""
    keys: set[str] = set()
    prefix = f"--{section}."
    for arg in args:
        if not isinstance(arg, str):
            continue
        if arg == f"--{section}" or arg.startswith(f"--{section}="):
            return None
        if arg.startswith(prefix):
            key = arg[len(prefix) :].split("=", 1)[0]
            for part in ("init_args.", "dict_kwargs."):
                key = key.removeprefix(part)
            keys.add(key.split(".", 1)[0])
    return keys


def check_model_overrides(
    asked: Mapping[str, Any],
    saved: Mapping[str, Any],
    given: set[str] | None,
    defaults: Mapping[str, Any],
    ckpt_path: str | Path,
) -> list[str]:
    """Refuse model settings given on the command line that the checkpoint's would replace.

    Args:
        asked: the parsed ``model`` section (config files and command line).
        saved: :func:`saved_model_hparams` of the checkpoint.
        given: :func:`given_keys` of the command line (``None``: every key).
        defaults: the model constructor's defaults (a value equal to its default was not asked for).
        ckpt_path: for messages.

    Returns:
        ``key=value`` descriptions of the settings a config file gave that the checkpoint replaces
        (to warn about).

    Raises:
        ValueError: a ``--model.<key>`` on the command line differs from the checkpoint's, naming
            every such key.
    """
    differing = {k: (asked[k], v) for k, v in saved.items() if k in asked and k not in LINKED_KEYS and asked[k] != v}
    refused = {k: pair for k, pair in differing.items() if given is None or k in given}
    if refused:
        listed = "; ".join(f"--model.{k} {a!r} (the checkpoint's: {s!r})" for k, (a, s) in refused.items())
        raise ValueError(
            f"--ckpt_path {str(ckpt_path)!r} builds the model from the checkpoint's own settings, so the command "
            f"line's {listed} would be silently ignored. Leave {'it' if len(refused) == 1 else 'them'} out to use the "
            "checkpoint as it was trained, or pass a checkpoint trained with these settings."
        )
    return [
        f"{k}={s!r} (the config says {a!r})"
        for k, (a, s) in differing.items()
        if k not in refused and (k not in defaults or a != defaults[k])
    ]
