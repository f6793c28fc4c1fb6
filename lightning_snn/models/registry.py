"""Name -> model constructor, so YAML configs and checkpoints refer to models by name."""

from __future__ import annotations

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
    return MODELS[name](**kwargs)
