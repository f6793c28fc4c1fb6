"""Classes by name: the registries of neuron models and layer statistics share these two steps.

A registry is a plain ``dict`` of name -> subclass of a base class. :func:`register_class` adds a
class under a name (refusing a second class under a taken name); :func:`find_class` finds a
registered name, or imports a dotted ``package.module.Class`` that is not registered (a config
names it as it names a model class), and refuses anything else with the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["find_class", "register_class"]


def register_class(
    registry: dict[str, type], kind: str, base: type, what: str, decorator: str
) -> Callable[[type], type]:
    """The class decorator of ``decorator(kind)``: put a subclass of ``base`` under ``kind`` (and set
    its ``kind`` attribute)."""

    def add(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{decorator}({kind!r}) takes a subclass of {base.__name__}, got {cls!r}.")
        taken = registry.get(kind)
        if taken is not None and taken is not cls:
            raise ValueError(f"{what} {kind!r} is already registered ({taken.__module__}.{taken.__qualname__}).")
        cls.kind = kind
        registry[kind] = cls
        return cls

    return add


def find_class(registry: dict[str, type], name: str, base: type, what: str, decorator: str) -> type:
    """The class registered under ``name``, or the subclass of ``base`` at that import path."""
    cls = registry.get(name) if isinstance(name, str) else None
    if cls is None and isinstance(name, str) and "." in name.strip("."):
        module, _, attr = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"{what} {name!r} cannot be imported ({err}); is its package installed?") from err
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{what} {name!r} is {cls!r}, not a subclass of {base.__module__}.{base.__qualname__}.")
    if cls is None:
        raise ValueError(
            f"unknown {what} {name!r}; choose one of {sorted(registry)}, register your own with {decorator}, "
            "or give its import path (package.module.Class)."
        )
    return cls
