"""lightning-snn: train ANNs made for conversion and turn them into spiking neural networks."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_CALLBACKS = f"{__name__}.callbacks"


class _CheckoutCallbacksFinder(importlib.abc.MetaPathFinder):
    """Find ``lightning_snn.callbacks`` in a source checkout's top-level ``callbacks/`` folder.

    The Lightning callbacks live in ``callbacks/`` beside the library (the design's layout); an
    install maps that folder to ``lightning_snn.callbacks`` (pyproject ``package-dir``) and never
    installs a top-level ``callbacks`` package. Run from a checkout (``python train.py`` with no
    install, or with a non-editable install that the checkout's ``lightning_snn`` shadows) there is
    no such subpackage: this finder supplies the same name, lazily, from the same folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _CALLBACKS:
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.folder / "__init__.py", submodule_search_locations=[str(self.folder)]
        )


def _install_checkout_finder() -> None:
    here = Path(__file__).resolve().parent
    folder = here.parent / "callbacks"
    in_checkout = (here.parent / "pyproject.toml").is_file() and (folder / "__init__.py").is_file()
    if in_checkout and not (here / "callbacks").exists():
        if not any(isinstance(f, _CheckoutCallbacksFinder) for f in sys.meta_path):
            # first, so that the folder beside *this* lightning_snn wins over an editable
            # install's mapping of another checkout
            sys.meta_path.insert(0, _CheckoutCallbacksFinder(folder))


_install_checkout_finder()
