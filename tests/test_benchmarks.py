"""Smoke tests of the benchmark scripts at tiny sizes: they run, write the keys the docs read,
and the engines they time agree. No timing is asserted (timings go to docs/BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(args: list[str], timeout: int = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(args, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "sim.json"
    args = "--width 0.0625 --batch-size 2 --T 4 --repeats 1 --chunks 1,4 --dtype float64".split()
    proc = run_script([sys.executable, str(BENCH / "simulation_speed.py"), *args, "--json", str(out)])
    return json.loads(out.read_text()), proc.stdout


def test_simulation_speed_writes_every_row_and_ratio(tiny_result):
    result, stdout = tiny_result
    assert {"config", "machine", "times_s", "ratios", "checks", "load_average", "notes"} <= set(result)
    times = result["times_s"]
    expected_rows = {
        "ours_auto",
        "ours_chunk_1",
        "ours_chunk_4",
        "reference_naive",
        "ann_forward_x_T",
        "ann_forward",
        "curve_one_pass",
        "curve_per_T_runs",
        "ours_signed_auto",
        "ours_eager_auto",
        "ours_before",
        "ours_signed_eager_auto",
    }
    assert expected_rows <= set(times)
    assert all(times[k]["median"] > 0 for k in times)
    assert all(times[k]["minor_faults_median"] >= 0 for k in times if k != "ann_forward")
    assert result["config"]["heap"].startswith("kept")  # --heap keep is the default
    assert times["ours_auto"]["time_chunk"] == result["config"]["auto_time_chunk"]
    assert result["config"]["curve_timesteps"][-1] == 4
    for key in (
        "ours_over_T_x_ann_forward",
        "curve_one_pass_over_one_T_max_run",
        "curve_one_pass_over_per_T_runs",
        "signed_over_if_time",
        "fused_over_eager_time",
        "ours_over_before_time",
    ):
        assert result["ratios"][key] > 0
    assert {"cpu_model", "torch_num_threads", "torch", "python", "spikingjelly"} <= set(result["machine"])
    assert "| ours_auto |" in stdout and "ratios of CPU time: {" in stdout  # the printed report


def test_simulation_speed_engines_agree(tiny_result):
    result, _ = tiny_result
    checks = result["checks"]
    assert checks["ours_vs_reference"]["predictions_equal"]
    assert checks["ours_vs_reference"]["max_abs_diff"] < 1e-9
    assert checks["ours_chunked_vs_per_step"]["predictions_equal"]
    assert checks["curve_equals_per_T_runs"]
    # the fused IF update gives the eager update's spikes, so its outputs bit for bit
    assert checks["fused_vs_eager"]["bit_identical"] and checks["signed_fused_vs_eager"]["bit_identical"]


def test_spikingjelly_rows_or_a_note(tiny_result):
    result, _ = tiny_result
    if result["machine"]["spikingjelly"] is None:
        assert any("spikingjelly is not installed" in n for n in result["notes"])
        return
    assert "spikingjelly_single_step" in result["times_s"]
    assert "throughput_ours_over_spikingjelly_single_step" in result["ratios"]
    # same weights and thresholds; SpikingJelly's IF starts at 0 like our shift="none"
    assert result["checks"]["spikingjelly_vs_ours_noshift"]["predictions_equal"]
    assert "spikingjelly_multi_step" in result["times_s"] or any("multi-step" in n for n in result["notes"])


def test_curve_timesteps_are_powers_of_two_up_to_T():
    bench = load_script("simulation_speed")
    assert bench.curve_timesteps(512) == [16, 32, 64, 128, 256, 512]
    assert bench.curve_timesteps(100) == [16, 32, 64, 100]
    assert bench.curve_timesteps(4) == [1, 2, 4]


def test_make_cifar_subset_keeps_the_layout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        np.savez(src / f"{split}.npz", images=images, labels=np.arange(n) % 10)
    subset = load_script("make_cifar_subset")
    # ten training images: labels 0..9, so the DataModule's check that the files hold 10 classes passes
    counts = subset.make_subset(src, tmp_path / "out", train=10, test=3)
    assert counts == {"train": 10, "test": 3}
    with np.load(tmp_path / "out" / "train.npz") as f, np.load(src / "train.npz") as g:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (10, 32, 32, 3)
        assert f["labels"].dtype == np.int64
        np.testing.assert_array_equal(f["images"], g["images"][:10])
    from lightning_snn.data import CIFAR10DataModule

    dm = CIFAR10DataModule(str(tmp_path / "out"), download=False, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 10 and len(dm.test_set) == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_script_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu_results"
    env = {"DEVICE": "cpu", "TINY": "1", "OUT": str(out), "PYTHON": sys.executable}
    env["SUBSET_DIR"] = str(tmp_path / "no_subset")  # forces the synthetic data path
    run_script(["bash", str(BENCH / "gpu.sh")], timeout=400, env=env)
    files = {p.name for p in out.iterdir()}
    assert {"env.txt", "gpu.log", "sim_b2.json", "sim_b1.json", "summary.txt", "train_snn_results.json"} <= files
    assert all(p.is_file() for p in out.iterdir())  # flat: what comes back from the device machine
    assert len(files) <= 8
    sim = json.loads((out / "sim_b2.json").read_text())
    assert sim["checks"]["ours_vs_reference"]["predictions_equal"]
    assert sim["checks"]["fused_vs_eager"]["bit_identical"] and sim["fused_build"]["unavailable_reason"] is None
    train = json.loads((out / "train_snn_results.json").read_text())
    assert set(train["snn_acc"]) == {"4", "8"}
    # the same checkpoint, converted again with diagnostics by `test`
    diag = json.loads((out / "test_snn_results.json").read_text())
    assert diag["stage"] == "test" and set(diag["firing_rates"]) == {"4", "8"}
    assert diag["ann_acc"] == train["ann_acc"] and diag["snn_acc"] == train["snn_acc"]

    # collect_gpu.py turns the folder into the docs' JSON: recipe, subset, training, both conversions
    sys.path.insert(0, str(BENCH))
    try:
        from collect_gpu import collect
    finally:
        sys.path.remove(str(BENCH))
    got = collect(out)
    assert got["recipe"]["model.optimizer.lr"] == "0.01" and got["recipe"]["model.arch"] == "vgg16"
    assert got["subset"] == {"train_images": 128, "test_images": 32}
    assert got["training"]["epochs_done"] == 1
    assert got["conversion"]["snn_acc"] == train["snn_acc"] and set(got["diagnostics"]["per_t"]) == {"4", "8"}
    assert [s["exit"] for s in got["steps"]] == [0, 0, 0, 0]


def test_sparse_crossover_study_runs_tiny(tmp_path, cifar10_dir):
    """The crossover study and its real-network test at toy sizes: every key the docs read, and the
    event-driven SNN's spikes equal the dense one's."""
    study = load_script("sparse_crossover")
    out = study.main(
        [
            *("--layers", "fc 128->128,16->16", "--rates", "0.01,0.2", "--repeats", "1"),
            *("--linear-rows", "4", "--conv-rows", "2", "--data-dir", str(cifar10_dir)),
            *("--network-checkpoint", str(tmp_path / "net.pt"), "--network-train", "256"),
            *("--network-images", "8", "--network-T", "4", "--json", str(tmp_path / "sparse.json")),
        ]
    )
    assert [r["layer"].split(" (")[0] for r in out["results"]] == ["fc 128->128", "conv 16->16 @32"]
    for r in out["results"]:
        assert len(r["ratio_to_dense"]["event_c"]) == 2 and r["crossover"]["event_c"]
        assert max(r["max_rel_diff"].values()) < 1e-5  # the same products, summed in another order
    net = out["network"]
    assert net["predictions_equal"] and net["layers_with_identical_spike_counts"] == "10 of 10"
    assert net["input_density"]["features.0"] == 1.0 and net["event_share_of_calls"]["features.0"] == 0.0
    assert json.loads((tmp_path / "sparse.json").read_text())["network"]["T"] == 4


def test_fused_update_script_times_both_and_they_agree(tmp_path):
    """benchmarks/fused_update.py at tiny shapes: every neuron x counting row, fused == eager bit for bit."""
    from lightning_snn import fused

    if fused.unavailable_reason("cpu") is not None:
        pytest.skip(f"no fused CPU kernel here: {fused.unavailable_reason('cpu')}")
    out = tmp_path / "fused_update.json"
    run_script([sys.executable, str(BENCH / "fused_update.py"), "--shapes", "2x3x5x5:3,4x8:1", "--repeats", "2",
                "--json", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [(r["shape"], r["neuron"], r["record_spikes"]) for r in rows] == [
        (shape, neuron, record)
        for shape in ([2, 3, 5, 5], [4, 8])
        for neuron in ("if", "signed")
        for record in (False, True)
    ]
    assert all(r["bit_identical"] for r in rows)


@pytest.mark.slow  # ~8 s: a study script in a subprocess (the other study scripts' tiny runs are slow tests too)
def test_diagnostics_overhead_times_every_part(tmp_path):
    """benchmarks/diagnostics_overhead.py at a toy size: the probe's reads and ANN pass were timed
    (its wrappers on the probe's parts ran), and the overhead follows from the unit costs."""
    out = tmp_path / "diag.json"
    args = ["--width", "0.0625", "--batch-size", "2", "--T", "32", "--repeats", "1", "--json", str(out)]
    run_script([sys.executable, str(BENCH / "diagnostics_overhead.py"), *args])
    r = json.loads(out.read_text())
    assert r["timesteps"] == [16, 32] and r["read_s"] > 0 and r["ann_statistics_s"] > 0
    expected = (2 * r["read_s"] + r["ann_statistics_s"] + 32 * r["max_pool_sums_per_step_s"]) / (32 * r["step_s"])
    assert r["overhead"] == pytest.approx(expected)
