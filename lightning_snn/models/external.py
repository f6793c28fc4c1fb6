"""Models that are not registered here: a torchvision classifier or the user's own ``nn.Module``.

``arch`` names them by import path, e.g. ``torchvision.models.resnet18`` or
``my_package.nets.MyCNN``; ``model_kwargs`` are its constructor's keyword arguments and
``num_classes`` is passed when the constructor takes it. To train such a model for conversion
with the threshold ReLU (or QCFS), :func:`with_activation` replaces every ReLU *call site* --
a module called twice, ``F.relu`` and ``torch.relu`` included -- by its own new activation
module, through the converter's graph (:func:`lightning_snn.graph.replace_activation_sites`),
so the model trained is the model converted.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from lightning_snn.activations import ActLayer
from lightning_snn.graph import replace_activation_sites


def import_model(path: str) -> Callable[..., nn.Module]:
    """The class or builder function at the dotted import ``path`` (``package.module.Name``)."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"{path!r} is not an import path: write package.module.Name, e.g. torchvision.models.resnet18."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} for arch {path!r} ({exc}); is the package installed, or your "
            "own module on PYTHONPATH?"
        ) from exc
    target = getattr(module, attr, None)
    if target is None or not callable(target):
        raise ValueError(f"{module_name!r} has no class or function {attr!r} (arch {path!r}).")
    return target


def build_external(path: str, num_classes: int, width: float = 1.0, **kwargs) -> nn.Module:
    """Instantiate the model at ``path`` with ``kwargs`` (and ``num_classes`` if it takes it)."""
    if width != 1.0:
        raise ValueError(
            f"width={width} scales the registered models only; for {path!r} set its own size arguments in model_kwargs."
        )
    builder = import_model(path)
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "num_classes" in params or takes_any:
        kwargs.setdefault("num_classes", num_classes)
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        raise TypeError(f"could not build {path!r} with model_kwargs {kwargs}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise TypeError(f"{path!r} returned a {type(model).__name__}, not an nn.Module.")
    return model


def with_activation(model: nn.Module, act_layer: ActLayer) -> nn.Module:
    """A copy of ``model`` in which every ReLU call site is a new ``act_layer()`` module.

    Clipped activations (``clamp(0, m)``, ``ReLU6``) and modules that are already
    convertible activations of ours are left as they are.
    """

    def make(_name: str, site: nn.Module) -> nn.Module:
        return act_layer() if type(site) is nn.ReLU else site

    return replace_activation_sites(model, make)
