"""Trust (issue 23), in plain PyTorch and on the callback: no code run from a file, no impossible
number reaching the results, no file of another run replaced, errors that name what is wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning_snn.callbacks.run_files import claim_files, release
from lightning_snn.callbacks.snn_conversion import SNNConversion
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.checkpoints import CheckpointError, check_model_overrides, given_keys, load_checkpoint
from lightning_snn.conversion import convert
from lightning_snn.data import CIFAR10DataModule
from lightning_snn.diagnostics import simulate_with_diagnostics
from lightning_snn.graph import ConversionError
from lightning_snn.physical import ImpossibleDiagnosticsError
from lightning_snn.results import RESULTS_SCHEMA_VERSION, ResultsError, dashboard_name, read_results
from lightning_snn.simulation import simulate
from tests.test_callback import fake_trainer, tiny_module
from tests.test_data_validation import write_split
from tests.user_models import UpsamplingNet


# ---- no code from a checkpoint ---------------------------------------------------------------------
class Planted:
    """Unpickling this calls open(path, "w"): a file appears if the loader ran code from the pickle."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def planted_checkpoint(tmp_path: Path, state: dict) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "planted.ckpt"
    torch.save({"pytorch-lightning_version": "2.6.6", "state_dict": state, "extra": Planted(marker)}, path)
    return path, marker


def test_init_from_never_runs_code_from_the_file_unless_opted_in(tmp_path):
    from lightning_snn.warm_start import load_except_head
    from tests.test_warm_start import tiny

    source, target = tiny(seed=0), tiny(seed=1)
    path, marker = planted_checkpoint(tmp_path, source.state_dict())
    with pytest.raises(CheckpointError, match=r"io\.open.*--model\.init_weights_only false"):
        load_except_head(target, path)
    assert not marker.exists()
    # the explicit opt-in loads it (and does run it: only for a file one trusts)
    assert load_except_head(target, path, weights_only=False)
    assert marker.exists()


def test_ckpt_path_never_runs_code_from_the_file_unless_opted_in(tmp_path):
    from lightning_snn.cli import check_lightning_checkpoint

    path, marker = planted_checkpoint(tmp_path, {})
    with pytest.raises(CheckpointError, match="--weights_only false"):
        check_lightning_checkpoint(path)
    assert not marker.exists()
    assert "pytorch-lightning_version" in check_lightning_checkpoint(path, weights_only=False)


def test_damaged_checkpoints_are_named_corrupt_or_incomplete(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, good)
    data = good.read_bytes()
    old_format = tmp_path / "old.pt"
    torch.save({"w": torch.ones(64)}, old_format, _use_new_zipfile_serialization=False)
    for name, content in (
        ("truncated.ckpt", data[: len(data) // 2]),
        ("empty.ckpt", b""),
        ("random.ckpt", bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))),
        ("truncated_old.pt", old_format.read_bytes()[:300]),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=rf"{name}' is corrupt or incomplete"):
            load_checkpoint(tmp_path / name, "--ckpt_path")
    assert set(load_checkpoint(good, "--ckpt_path")["state_dict"]) == {"w"}
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt", "--ckpt_path")


# ---- a checkpoint's model settings vs the command line's ---------------------------------------------
def test_overrides_the_checkpoint_would_replace_are_refused_by_name():
    saved = {"arch": "vgg11", "width": 0.0625, "relu_warmup_epochs": 0, "num_classes": 10}
    asked = {"arch": "vgg13", "width": 0.25, "relu_warmup_epochs": 3, "num_classes": 100}
    defaults = {"arch": "vgg16", "width": 1.0, "relu_warmup_epochs": 20, "num_classes": 10}
    given = given_keys(["test", "--model.arch", "vgg13", "--model.init_args.width=0.25", "--ckpt_path=x"])
    assert given == {"arch", "width"}
    with pytest.raises(ValueError, match=r"--model\.arch 'vgg13' \(the checkpoint's: 'vgg11'\); --model\.width 0\.25"):
        check_model_overrides(asked, saved, given, defaults, "x.ckpt")
    # the same values from a config file: the checkpoint's win, said in a warning (num_classes is linked)
    assert check_model_overrides(asked, saved, set(), defaults, "x.ckpt") == [
        "arch='vgg11' (the config says 'vgg13')",
        "width=0.0625 (the config says 0.25)",
        "relu_warmup_epochs=0 (the config says 3)",
    ]
    assert check_model_overrides({**asked, "arch": "vgg16"}, saved, set(), defaults, "x")[0].startswith("width")
    assert given_keys(["--model", "cfg.yaml"]) is None  # the whole section given
    with pytest.raises(ValueError, match="arch"):
        check_model_overrides(asked, saved, None, defaults, "x.ckpt")
    assert check_model_overrides(saved, saved, None, defaults, "x.ckpt") == []


# ---- physically possible diagnostics -------------------------------------------------------------
def diverged_net(scale: float) -> nn.Module:
    """Weights ``scale`` times too large, as after a training that diverged: currents of ~``scale``
    reach neurons whose threshold is 1 (the threshold ReLU's clip)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 24), ThresholdReLU(1.0), nn.Linear(24, 24), ThresholdReLU(1.0), nn.Linear(24, 3))
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight.mul_(scale)
    return net.eval()


@pytest.mark.parametrize("neuron", ["if", "signed"])
@pytest.mark.parametrize("scale", [1e3, 1e12])
def test_diverged_networks_give_physical_rates_or_fail_loudly(neuron, scale):
    """Currents of ~1e3 V_th: the counts recovered from the membrane's charge are the engine's own,
    exactly. Of ~1e12 V_th (a diverged training): float32 has no digits left for the count (it used
    to come out as -1e5 or 1e6 spikes in 12 steps); every rate stays in [0, 1], and the results are
    refused, not written. A signed neuron counts its own spikes: exact at any scale."""
    net = diverged_net(scale)
    snn = convert(net, {"1": 1.0, "3": 1.0}, shift="membrane", neuron=neuron)
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(1))
    for t in (5, 12):
        _, diag = simulate_with_diagnostics(snn, net, x, [t], time_chunk=4)
        simulate(snn, x, [t], time_chunk=4, record_spikes=True)
        rates = diag.firing_rates()[t]["layers"]
        assert all(0 <= r <= 1 for r in rates.values()), rates
        counts = {n: float(snn.body.get_submodule(n).spike_count.sum()) for n in ("1", "3")}
        exact = all(rates[layer] * 24 * t * 16 == counts[layer] for layer in ("1", "3"))
        assert all(0 < c < 16 * 24 * t for c in counts.values())  # not vacuous
        if scale < 1e6 or neuron == "signed":
            assert exact, (t, rates)
            diag.to_json()  # physical and measured: passes the check
        else:
            with pytest.raises(ImpossibleDiagnosticsError, match=r"spike counts of \d+ neuron\(s\) of '1' at T=\d+"):
                diag.to_json()


def test_non_finite_diagnostics_fail_loudly():
    net = diverged_net(1e30)  # currents overflow float32 to inf: no count can be recovered
    snn = convert(net, {"1": 1.0, "3": 1.0}, shift="membrane")
    x = torch.randn(8, 12, generator=torch.Generator().manual_seed(1)) * 1e10
    _, diag = simulate_with_diagnostics(snn, net, x, [4])
    with pytest.raises(
        ImpossibleDiagnosticsError, match=r"not physically possible or not measurable: .*'1' at T=4 = nan.*diverge"
    ):
        diag.to_json()


# ---- results files: claimed, never replaced --------------------------------------------------------
def test_two_runs_with_absolute_results_files_in_one_folder_keep_their_own_pictures(tmp_path):
    shared = tmp_path / "shared"
    for i, name in enumerate(("a.json", "b_results.json")):
        trainer = fake_trainer(tmp_path, default_root_dir=str(tmp_path / f"run{i}"))
        callback = SNNConversion(timesteps=[2, 4], results_file=str(shared / name))
        callback.setup(trainer, tiny_module(), stage="test")
        callback.evaluate(trainer, tiny_module(), stage="test")
    pictures = {p.name: p.read_bytes() for p in shared.glob("*.png")}
    assert set(pictures) == {"a_report.png", "b_report.png"}
    assert all(png.startswith(b"\x89PNG") for png in pictures.values())
    assert {p.name for p in shared.glob("*.json")} == {"a.json", "b_results.json"}
    # a results file whose picture is taken is refused before any work, as one whose results are
    (shared / "c_report.png").write_bytes(b"another run's picture")
    with pytest.raises(ValueError, match="c_report.png' exists: another run's results"):
        SNNConversion(results_file=str(shared / "c.json")).setup(fake_trainer(tmp_path), tiny_module(), stage="test")
    assert not (shared / "c.json").exists()  # nothing half-claimed
    assert dashboard_name("snn_results.json") == "snn_report.png"


def test_a_results_file_that_leads_out_of_the_run_directory_is_checked(tmp_path):
    trainer = fake_trainer(tmp_path)  # run directory: tmp_path / "run"
    (tmp_path / "x.json").write_text('{"another": "run"}')
    with pytest.raises(ValueError, match="x.json' exists: another run's results"):
        SNNConversion(results_file="../x.json").setup(trainer, tiny_module(), stage="test")
    assert json.loads((tmp_path / "x.json").read_text()) == {"another": "run"}
    callback = SNNConversion(timesteps=[2], results_file="../y.json", diagnostics=False)
    callback.setup(trainer, tiny_module(), stage="test")
    callback.evaluate(trainer, tiny_module(), stage="test")
    assert json.loads((tmp_path / "y.json").read_text())["stage"] == "test"


def test_claims_are_all_or_nothing_and_released_when_unused(tmp_path):
    run = tmp_path / "run"
    first = claim_files(run, ["r.json", "r_report.png"], "snn.results_file")
    assert first == [run / "r.json", run / "r_report.png"] and all(p.stat().st_size == 0 for p in first)
    second = claim_files(run, ["r.json", "r_report.png"], "snn.results_file")  # one run evaluating again
    assert second[0].parent == second[1].parent == run / "run_1"
    (tmp_path / "out" / "s_report.png").parent.mkdir()
    (tmp_path / "out" / "s_report.png").write_text("taken")
    with pytest.raises(ValueError, match="exists"):
        claim_files(run, [tmp_path / "out" / "s.json", tmp_path / "out" / "s_report.png"], "snn.results_file")
    assert not (tmp_path / "out" / "s.json").exists()
    release(first)
    assert not any(p.exists() for p in first)
    # a run that fails after its setup leaves no empty results file behind
    trainer = fake_trainer(tmp_path)
    callback = SNNConversion(timesteps=[2])
    callback.setup(trainer, tiny_module(), stage="fit")
    assert (tmp_path / "run" / "snn_results.json").is_file()
    callback.on_exception(trainer, tiny_module(), RuntimeError("training failed"))
    assert not list((tmp_path / "run").rglob("snn_*"))


# ---- refused before training -----------------------------------------------------------------------
def test_unconvertible_models_are_refused_in_setup():
    import torchvision

    module = tiny_module()
    for model, name in ((UpsamplingNet(), "Upsample"), (torchvision.models.mobilenet_v3_small(), "Hardswish")):
        module.model = model
        with pytest.raises(ConversionError, match=name):
            SNNConversion().setup(fake_trainer(Path("/nonexistent")), module, stage="fit")
    module.model = UpsamplingNet()
    SNNConversion(on_fit=False).setup(fake_trainer(Path("/nonexistent")), module, stage="fit")  # no conversion


def test_empty_missing_random_and_pickled_npz_files_are_named(tmp_path):
    def error(folder: Path) -> str:
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            dm = CIFAR10DataModule(str(folder), download=True, num_workers=0)
            dm.prepare_data()
            dm.setup("fit")
        return str(info.value)

    write_split(tmp_path / "empty", "train")
    write_split(tmp_path / "empty", "test", images=np.zeros((0, 32, 32, 3), np.uint8), labels=np.zeros(0, int))
    assert "test.npz: no images" in error(tmp_path / "empty")
    write_split(tmp_path / "one", "train")
    assert "has train.npz but no test.npz" in error(tmp_path / "one")  # never a download attempt
    write_split(tmp_path / "random", "test")
    (tmp_path / "random" / "train.npz").write_bytes(bytes(range(256)) * 8)
    message = error(tmp_path / "random")
    assert "train.npz: it is not a valid .npz file" in message and "pickle" not in message
    write_split(tmp_path / "objects", "test")
    np.savez(tmp_path / "objects" / "train.npz", images=np.array([{}] * 3, dtype=object), labels=np.arange(3))
    message = error(tmp_path / "objects")
    assert "object arrays" in message and "allow_pickle" not in message


# ---- results read back: versioned, checked ---------------------------------------------------------
def test_results_carry_a_schema_version_and_readers_refuse_other_shapes(tmp_path):
    from lightning_snn.evaluation import evaluate_conversion
    from lightning_snn.report import main
    from tests.test_evaluation import binary_batches, binary_hidden_net

    batches = binary_batches(16)
    report = evaluate_conversion(binary_hidden_net(), [x for x, _ in batches], batches, [2, 4], diagnostics=True)
    data = report.to_json()
    assert data["schema_version"] == RESULTS_SCHEMA_VERSION
    good = tmp_path / "snn_results.json"
    good.write_text(json.dumps(data))
    assert read_results(good)["snn_acc"] == data["snn_acc"]
    assert main([str(good)]) == tmp_path / "snn_report.png"

    def refused(content: str | None, match: str, *args: str) -> None:
        path = tmp_path / "case.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(content)
        with pytest.raises(ResultsError, match=match):
            read_results(path)
        with pytest.raises(SystemExit) as info:
            main([str(path), *args])
        assert info.value.code == 1

    refused(json.dumps(data)[:-40], "not valid JSON")
    refused(None, "no such file")
    refused("", "is empty: a run claims its results file when it starts")
    refused(json.dumps({**data, "schema_version": RESULTS_SCHEMA_VERSION + 1}), "schema_version 2")
    refused(json.dumps({**data, "firing_rates": {"4": data["firing_rates"]["4"]}}), "'firing_rates' should hold")
    refused(json.dumps([1, 2]), "JSON list")
    old = {k: v for k, v in data.items() if k != "schema_version"}  # written before the version was recorded
    good.write_text(json.dumps(old))
    assert read_results(good) == old
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as info:
        main([str(good), "-o", str(tmp_path / "a_file" / "x.png")])
    assert info.value.code == 1


# ---- simulate(): rows in the order asked -----------------------------------------------------------
def test_simulate_returns_one_row_per_T_in_the_order_asked():
    net = diverged_net(1.0)
    snn = convert(net, {"1": 1.0, "3": 1.0})
    x = torch.rand(4, 12)
    alone = {t: simulate(snn, x, [t], time_chunk=1)[0] for t in (3, 8, 16)}
    for asked in ([16, 3, 8], [8, 8, 3], [3, 8, 16]):
        out = simulate(snn, x, asked, time_chunk=1)
        assert out.shape[0] == len(asked)
        for row, t in zip(out, asked, strict=True):
            assert torch.allclose(row, alone[t], atol=1e-6), (asked, t)
        with_diag, _ = simulate_with_diagnostics(snn, net, x, asked, time_chunk=1)
        assert torch.allclose(with_diag, out, atol=1e-6)
    assert math.isclose(float(simulate(snn, x, 8, time_chunk=1)[0].sum()), float(alone[8].sum()), rel_tol=1e-6)
