"""Name -> model constructor, so YAML configs and checkpoints refer to models by name."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = fn
        return fn

    return decorator


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("vgg16", num_classes=10, width=0.25)``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}.")
    valid = accepted_kwargs(MODELS[name])
    unknown = sorted(set(kwargs) - valid) if valid is not None else []
    if unknown:
        raise TypeError(
            f"model {name!r} has no argument(s) {unknown} (a typo in model_kwargs?); its arguments are {sorted(valid)}."
        )
    return MODELS[name](**kwargs)


def accepted_kwargs(fn: Callable) -> set[str] | None:
    """The keyword arguments ``fn`` accepts, following its ``**kwargs`` into the class it returns
    (its return annotation); None if that cannot be known (then nothing is refused)."""
    names, open_ended = _parameters(fn)
    if open_ended:
        try:
            target = typing.get_type_hints(fn).get("return")
        except Exception:  # an unresolvable annotation: do not guess
            return None
        if not inspect.isclass(target):
            return None
        more, open_ended = _parameters(target)
        if open_ended:
            return None
        names |= more
    return names


def _parameters(obj: Callable) -> tuple[set[str], bool]:
    """(named keyword parameters, whether it also takes ``**kwargs``) of a function or class."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def check_model_args(width: float, num_classes: int) -> None:
    """The constructor arguments every registered model shares, checked once."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
