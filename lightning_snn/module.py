"""The LightningModule that trains a source ANN for conversion.

It owns the ReLU warm-up: every threshold ReLU is plain ReLU for the first
``relu_warmup_epochs`` epochs, then clipped at ``y_th`` (paper A.1). The switch is derived
from ``current_epoch`` at the start of every training epoch, so a resumed run is right; the
switch state is also a buffer of each activation, so a checkpoint restores it for ``test``.

Evaluation-only settings (T list, shift mode, readout, calibration size) are deliberately
not here: they live on :class:`lightning_snn.callbacks.SNNConversion`, because ``test --ckpt_path``
would overwrite module hyperparameters with the checkpoint's.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_snn.activations import ACTIVATIONS, WARMUP_ACTIVATIONS, make_activation, set_threshold_enabled
from lightning_snn.models import MODELS, create_model
from lightning_snn.models.external import build_external, with_activation
from lightning_snn.models.registry import accepted_kwargs
from lightning_snn.warm_start import load_except_head


class ConversionModule(pl.LightningModule):
    """Trains a source ANN for conversion (threshold ReLU, QCFS or ReLU) with cross entropy.

    Args:
        arch: a registered model name (``lightning_snn.models.MODELS``), e.g. ``"vgg16"``, or
            the import path of any classifier: a torchvision model (``torchvision.models.resnet18``)
            or your own ``nn.Module`` class (``my_package.nets.MyCNN``), built with
            ``model_kwargs`` (and ``num_classes`` if it takes it). With ``threshold_relu`` or
            ``qcfs`` every ReLU call site of such a model (reused modules and ``F.relu``
            included) is replaced by that activation before training; with ``relu`` it stays.
        num_classes: output classes (linked from the DataModule by the CLI).
        width: channel multiplier of the model.
        activation: ``"threshold_relu"`` (ReLU warm-up, then clipped), ``"relu"`` (never
            clipped: the paper's plain-ReLU source ANN) or ``"qcfs"`` (ReLU warm-up, then
            the quantized clip of Bu et al. 2022, :class:`~lightning_snn.activations.QCFS`;
            set ``relu_warmup_epochs: 0`` to train quantized from the start, as they do).
        y_th: the threshold ReLU's clip (1 on CIFAR-10, 2 on CIFAR-100 in the paper); QCFS's
            ``lambda`` (its initial value if trainable).
        levels: QCFS's quantization steps ``L`` (an int >= 1); qcfs only.
        trainable_threshold: learn QCFS's ``lambda`` per layer; qcfs only.
        relu_warmup_epochs: epochs of plain ReLU before the clip is switched on.
        model_kwargs: further keyword arguments of the model constructor (dropout, ...).
        optimizer: optimizer factory; default SGD(lr=0.01, momentum=0.9, weight_decay=5e-4).
        lr_scheduler: scheduler factory (stepped per epoch); default none.
        init_from: warm start: a Lightning ``.ckpt`` or plain state-dict file of a model of
            the same arch and width, loaded at the start of ``fit`` (in ``setup``, so a
            resumed run's ``--ckpt_path`` still wins and ``test`` never needs the file); the
            paper starts CIFAR-100 from the CIFAR-10 weights. None = random initialisation.
        init_skip_head: leave the output layer (the last ``nn.Linear``) out of the warm start,
            e.g. when the number of classes differs.
        init_weights_only: load ``init_from`` with torch's restricted unpickler (tensors and plain
            containers: every file this project writes); ``False`` unpickles anything, which can
            run code stored in the file: only for a file you trust (``docs/TRUST.md``).
        vocab_size: the embedding rows of a text model (``arch: rnn`` / ``spiking_rnn``); the CLI links
            it from a text DataModule's ``vocab_size`` (:class:`lightning_snn.text_data.SSTDataModule`).
    """

    def __init__(
        self,
        arch: str = "vgg16",
        num_classes: int = 10,
        width: float = 1.0,
        activation: str = "threshold_relu",
        y_th: float = 1.0,
        levels: int = 4,
        trainable_threshold: bool = False,
        relu_warmup_epochs: int = 20,
        model_kwargs: dict[str, Any] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        init_from: str | None = None,
        init_skip_head: bool = True,
        init_weights_only: bool = True,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}.")
        if not y_th > 0:
            raise ValueError(f"y_th must be > 0, got {y_th}: it is the clipping level of the threshold ReLU.")
        if relu_warmup_epochs < 0:
            raise ValueError(f"relu_warmup_epochs must be >= 0, got {relu_warmup_epochs}.")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.model: nn.Module = self._build_model(model_kwargs)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.update_threshold(0)
        self.warm_started_from: str | None = None

    def _build_model(self, model_kwargs: dict[str, Any] | None) -> nn.Module:
        """The model with this module's activation injected as its ``act_layer``: the one place where the
        named settings (``activation``, ``y_th``, QCFS's options, ``model_kwargs.activation_shift``) become
        the factory; the models take only that (:func:`lightning_snn.models.create_model`)."""
        hp, kwargs = self.hparams, dict(model_kwargs or {})
        qcfs_options = {}
        if hp.activation == "qcfs" or hp.levels != 4 or hp.trainable_threshold:
            # given for another activation, make_activation refuses them rather than ignore them
            qcfs_options = {"levels": hp.levels, "trainable": hp.trainable_threshold}
        # the shift is a model_kwargs key for compatibility with existing configs
        shift = kwargs.pop("activation_shift", 0.0)
        if hp.vocab_size is not None:  # text data: only a text model takes it
            if hp.arch in MODELS and "vocab_size" not in (accepted_kwargs(MODELS[hp.arch]) or {"vocab_size"}):
                raise ValueError(
                    f"the data are sentences (a vocabulary of {hp.vocab_size} words) but model {hp.arch!r} takes "
                    "images: use a text model (arch: rnn or spiking_rnn) with a text DataModule."
                )
            kwargs["vocab_size"] = hp.vocab_size
        act_layer = make_activation(hp.activation, y_th=hp.y_th, shift=shift, **qcfs_options)
        if hp.arch in MODELS or "." not in hp.arch:
            return create_model(hp.arch, num_classes=hp.num_classes, width=hp.width, act_layer=act_layer, **kwargs)
        # a torchvision model or the user's own class, by import path
        if shift:
            raise ValueError("model_kwargs.activation_shift applies to the registered models only.")
        model = build_external(hp.arch, num_classes=hp.num_classes, width=hp.width, **kwargs)
        if hp.activation in WARMUP_ACTIVATIONS:  # every ReLU call site becomes a switchable activation
            model = with_activation(model, act_layer)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ---- warm start ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.warm_start()

    def warm_start(self) -> list[str]:
        """Load ``init_from`` into the model (all but the output layer if ``init_skip_head``), once.

        Returns the loaded keys (empty if there is nothing to load or it was loaded already).
        """
        path = self.hparams.init_from
        if not path or self.warm_started_from == path:
            return []
        loaded = load_except_head(
            self.model, path, skip_head=self.hparams.init_skip_head, weights_only=self.hparams.init_weights_only
        )
        self.update_threshold(0)  # the source run's warm-up switch state is not ours
        self.warm_started_from = path
        rank_zero_info(f"warm start: {len(loaded)} tensors loaded from {path}")
        return loaded

    # ---- the ReLU warm-up ----------------------------------------------------------------
    def threshold_active(self, epoch: int) -> bool:
        return self.hparams.activation in WARMUP_ACTIVATIONS and epoch >= self.hparams.relu_warmup_epochs

    def update_threshold(self, epoch: int) -> None:
        set_threshold_enabled(self.model, self.threshold_active(epoch))

    def on_fit_start(self) -> None:
        hp = self.hparams
        warning = warmup_covers_training(hp.activation, hp.relu_warmup_epochs, self.trainer.max_epochs)
        if warning:
            rank_zero_warn(warning)

    def on_train_epoch_start(self) -> None:
        self.update_threshold(self.current_epoch)
        self.log("train/threshold_on", float(self.threshold_active(self.current_epoch)), sync_dist=False)

    # ---- steps ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, batch {batch_idx}: "
                "lower the learning rate (plain-ReLU nets without batch norm diverge at high rates). "
                "No checkpoint is written for this step."
            )
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch, metric: MulticlassAccuracy, stage: str) -> None:
        x, y = batch
        logits = self(x)
        metric(logits, y)
        self.log(f"{stage}/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)
        self.log(f"{stage}/acc", metric, prog_bar=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_acc, "test")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another architecture with a message that says what to do."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("arch", "width", "num_classes"):
            if key in saved and saved[key] != self.hparams.get(key):
                raise ValueError(
                    f"the checkpoint was trained with {key}={saved[key]!r}, but this model has "
                    f"{key}={self.hparams.get(key)!r}: pass the checkpoint's settings (--model.{key} "
                    f"{saved[key]}) or a checkpoint of this architecture."
                )
        own = self.state_dict()
        mismatched = [k for k, v in checkpoint.get("state_dict", {}).items() if k in own and own[k].shape != v.shape]
        if mismatched:
            raise ValueError(
                f"the checkpoint's tensors {mismatched[:5]} have other shapes than this model's: "
                "it is a checkpoint of another architecture or width."
            )

    # ---- optimisation --------------------------------------------------------------------
    def configure_optimizers(self):
        params = self.parameters()
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        else:
            optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }


def warmup_covers_training(activation: str, relu_warmup_epochs: int, max_epochs: int | None) -> str | None:
    """A warning if the ReLU warm-up lasts the whole run, so the clipping activation never clips."""
    if activation not in WARMUP_ACTIVATIONS or max_epochs is None or max_epochs < 0:
        return None
    if relu_warmup_epochs == 0 or relu_warmup_epochs < max_epochs:  # the clip is on from epoch 0, or switches on
        return None
    return (
        f"model.relu_warmup_epochs={relu_warmup_epochs} >= trainer.max_epochs={max_epochs}: the {activation} "
        "activation never clips in this run, so the source ANN is a plain-ReLU network (snn_results.json records "
        "threshold_clip_on: false). Set relu_warmup_epochs below max_epochs, or activation: relu to say so."
    )
