"""A QCFS source ANN through the command line: trained, calibrated and converted on real CIFAR-10."""

from __future__ import annotations

import json
import math

import torch

from lightning_snn.activations import QCFS
from tests.conftest import REPO
from tests.test_cli import results_files, tiny_args

#: What a user adds to a config (or passes as --model.activation qcfs --model.levels 4 ...).
QCFS_SNIPPET = """\
model:
  arch: cifarnet
  activation: qcfs
  levels: 4
  trainable_threshold: true
  y_th: 1.0
  relu_warmup_epochs: 0
"""


def test_fit_a_qcfs_model_from_yaml(cifar10_dir, tmp_path):
    from lightning_snn.cli import main

    snippet = tmp_path / "qcfs.yaml"
    snippet.write_text(QCFS_SNIPPET)
    args = ["fit", "-c", str(REPO / "configs" / "quickstart.yaml"), "-c", str(snippet)]
    args += [*tiny_args(cifar10_dir, tmp_path, timesteps="[4,8]"), "--trainer.max_epochs=1"]
    args += ["--data.init_args.train_samples=256", "--trainer.limit_train_batches=4"]
    # no validation loop: (tiny_args' limit_val_batches=1 reaches Lightning as 1.0, i.e. all batches)
    args += ["--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0"]
    torch.manual_seed(0)
    cli = main(args)

    hp = cli.model.hparams
    assert (hp.activation, hp.levels, hp.trainable_threshold) == ("qcfs", 4, True)
    acts = {name: m for name, m in cli.model.model.named_modules() if isinstance(m, QCFS)}
    assert len(acts) == 7 and all(a.levels == 4 and a._enabled for a in acts.values())  # 5 convs + 2 FC
    assert any(a.y_th != 1.0 for a in acts.values()), "no lambda was trained"

    (results,) = results_files(tmp_path)
    r = json.loads(results.read_text())
    assert set(r["snn_acc"]) == {"4", "8"} and all(math.isfinite(v) for v in r["snn_acc"].values())
    # a QCFS layer's outputs are multiples of lambda / L, at most lambda: so is its calibrated maximum
    assert set(r["thresholds"]) == set(acts)
    for name, vth in r["thresholds"].items():
        step = acts[name].y_th / 4
        assert 0 < vth <= acts[name].y_th + 1e-6
        assert abs(vth / step - round(vth / step)) < 1e-4, (name, vth, step)
