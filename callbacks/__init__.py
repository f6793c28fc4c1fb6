"""Lightning callbacks of lightning-snn, installed as ``lightning_snn.callbacks``.

This folder sits beside the library (``lightning_snn/``) in the source tree; the library never
imports it (only the CLI, which composes both). Import it as ``lightning_snn.callbacks``, e.g. the
class path ``lightning_snn.callbacks.SNNConversion`` in a YAML config.
"""

from .dead_layer import StopWhenDead
from .snn_conversion import SNNConversion

__all__ = ["SNNConversion", "StopWhenDead"]
