"""Name -> model constructor, so YAML configs and checkpoints refer to models by name."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}

#: The named activation settings of a config (``activation``, ``y_th``, ``model_kwargs.activation_shift``):
#: :class:`lightning_snn.module.ConversionModule` turns them into the models' one ``act_layer``.
NAMED_ACTIVATION_SETTINGS = frozenset({"activation", "y_th", "activation_shift"})


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = fn
        return fn

    return decorator


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("vgg16", num_classes=10, width=0.25)``.

    The activation is one argument, ``act_layer`` (timm's): a factory such as
    ``make_activation("relu", y_th=2.0, shift=0.25)`` (:mod:`lightning_snn.activations`).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}.")
    valid = accepted_kwargs(MODELS[name])
    unknown = sorted(set(kwargs) - valid) if valid is not None else []
    if unknown:
        hint = ""
        if set(unknown) & NAMED_ACTIVATION_SETTINGS and "act_layer" in valid:
            hint = (
                " The activation is one argument, act_layer: in Python act_layer=make_activation(activation, "
                "y_th=..., shift=...) from lightning_snn.activations; in a config model.activation, model.y_th and "
                "model.model_kwargs.activation_shift."
            )
        raise TypeError(
            f"model {name!r} has no argument(s) {unknown} (a typo in model_kwargs?); its arguments are "
            f"{sorted(valid)}.{hint}"
        )
    return MODELS[name](**kwargs)


def accepted_kwargs(fn: Callable) -> set[str] | None:
    """The keyword arguments ``fn`` accepts, following its ``**kwargs`` where they go: from a builder
    function into the class it returns (its return annotation), and from a class into its base
    classes' ``__init__`` (``super().__init__(**settings)``), until one takes no ``**kwargs``;
    None if that cannot be known (then nothing is refused)."""
    names, open_ended = _parameters(fn)
    for target in _kwargs_targets(fn):
        if not open_ended:
            break
        more, open_ended = _parameters(target)
        names |= more
    return None if open_ended else names


def _kwargs_targets(fn: Callable) -> list[Callable]:
    """Where ``fn``'s ``**kwargs`` may go, in order: the class a builder returns, then the bases that
    define their own ``__init__``."""
    cls, chain = fn, []
    if not inspect.isclass(fn):
        try:
            cls = typing.get_type_hints(fn).get("return")
        except Exception:  # an unresolvable annotation: do not guess
            return []
        if not inspect.isclass(cls):
            return []
        chain.append(cls)
    return chain + [base for base in cls.__mro__[1:] if "__init__" in vars(base)]


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
