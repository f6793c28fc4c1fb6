"""Source ANNs made for conversion, registered by name (see :mod:`lightning_snn.models.registry`)."""

from lightning_snn.models import cifarnet, resnet, rnn, spiking_rnn, vgg, vgg_variants  # noqa: F401  (register)
from lightning_snn.models.registry import MODELS, create_model, register_model

#: Registered models whose input is a text batch ``(ids, lengths)`` (the others take images).
TEXT_MODELS = ("rnn", "spiking_rnn")

__all__ = ["MODELS", "TEXT_MODELS", "create_model", "register_model"]
