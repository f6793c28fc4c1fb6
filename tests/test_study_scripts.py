"""The study scripts (benchmarks/fidelity.py, low_latency.py, converter_agreement.py (and its --probe)
and what they share in benchmarks/study.py) run end to end at a tiny size, so they do not rot; the
docs rendered from their JSON (benchmarks/render.py) are what the committed JSON says."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_tiny(script: str, cifar10_dir, tmp_path, *extra: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / script),
            "--tiny",
            f"--data-dir={cifar10_dir}",
            f"--work-dir={tmp_path / 'work'}",
            f"--out-dir={tmp_path / 'docs'}",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_fidelity_script_tiny(cifar10_dir, tmp_path):
    run_tiny("fidelity.py", cifar10_dir, tmp_path)
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["results_tiny.json"]  # the study writes JSON only
    data = json.loads((tmp_path / "docs" / "results_tiny.json").read_text())
    for src in ("relu", "threshold"):
        r = data["results"][src]
        assert set(r["snn_acc"]) == {"none", "bias", "membrane"}
        assert len(r["snn_acc"]["membrane"]) == 7
        assert len(r["sha256"]) == 64
    out = tmp_path / "out" / "RESULTS.md"
    doc = render_page("RESULTS.md", out, results__json=tmp_path / "docs" / "results_tiny.json")
    assert "width 0.0625" in doc and "first 64 test images" in doc and "Table 4" in doc
    assert (out.parent / "results_acc_vs_T.png").stat().st_size > 1000


def render_page(page: str, out, **data) -> str:
    """docs/<page> rendered with the given JSON files in place of the committed ones, into ``out``."""
    subst = [f"{name.replace('__', '.')}={path}" for name, path in data.items()]
    cmd = [sys.executable, str(REPO / "benchmarks" / "render.py"), str(REPO / "docs" / page), "--out", str(out)]
    proc = subprocess.run([*cmd, "--data", *subst], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out.read_text()


def render_blocks(folder, blocks: list[str]) -> str:
    """A page of the given generated blocks (``"section from a.json b.json"``, names relative to
    ``folder``, where docs/paper_numbers.json is copied), rendered in ``folder`` by render.py."""
    (folder / "paper_numbers.json").write_text((REPO / "docs" / "paper_numbers.json").read_text())
    page = folder / "PAGE.md"
    page.write_text("".join(f"<!-- generated: {b} -->\n<!-- end generated -->\n\n" for b in blocks))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "render.py"), str(page)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return page.read_text()


#: Every block of a width study's section, for a study JSON ``{0}`` (and its checks, added by the caller).
WIDTH_BLOCKS = [
    "fidelity.width_command from {0}", "fidelity.network from {0}", "fidelity.width_setup from {0}",
    "fidelity.width_sources from {0}", "fidelity.width_loss from {0}", "fidelity.width_accuracy from {0}",
    "fidelity.width_against from {0} paper_numbers.json", "fidelity.width_differs from {0}",
]  # fmt: skip


@pytest.mark.slow  # ~2-3 min on 2 cores (four source ANNs, thirteen conversions); CI runs the slow tests too
def test_low_latency_script_tiny_renders_and_resumes(cifar10_dir, tmp_path):
    run_tiny("low_latency.py", cifar10_dir, tmp_path)
    data = json.loads((tmp_path / "docs" / "low_latency_tiny.json").read_text())
    results = data["results"]
    assert {"threshold", "qcfs2", "qcfs4", "qcfs8"} <= set(results["sources"])
    for src in results["sources"].values():
        assert len(src["sha256"]) == 64
    converted = [v for v in results["variants"].values() if "error" not in v]
    assert converted and all(len(v["snn_acc"]) == 7 for v in converted)
    doc = render_page(
        "LOW_LATENCY.md",
        tmp_path / "out" / "LOW_LATENCY_tiny.md",
        low_latency__json=tmp_path / "docs" / "low_latency_tiny.json",
    )
    assert "Published anchors" in doc and "targets met" in doc and "width 0.0625" in doc
    assert (tmp_path / "out" / "low_latency_acc_vs_T.png").stat().st_size > 1000

    # the rerun trains and converts nothing: every network and variant is in the work dir's state
    proc = run_tiny("low_latency.py", cifar10_dir, tmp_path)
    assert "== training" not in proc.stdout and proc.stdout.count("stored in the work dir") == len(results["variants"])
    assert json.loads((tmp_path / "docs" / "low_latency_tiny.json").read_text())["results"] == results
    # another training recipe in the same work dir is refused by name; another test size converts again
    proc = run_tiny("low_latency.py", cifar10_dir, tmp_path, "--seed", "1", ok=False)
    assert proc.returncode != 0 and "'seed': (0, 1)" in proc.stderr


@pytest.mark.slow  # ~1 min on 2 cores: four networks trained on 256 images, 8 test images to T = 16
def test_converter_agreement_and_resnet18_probe_tiny(cifar10_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    common = [f"--data-dir={cifar10_dir}", "--train-images", "256", "--test-images", "8", "--timesteps", "4", "16"]
    agree, probe = tmp_path / "agree.json", tmp_path / "probe.json"
    script = [sys.executable, str(REPO / "benchmarks" / "converter_agreement.py"), *common]
    for extra in (
        ["--calibration-images", "64", "--batch-size", "8", "--json", str(agree)],
        ["--probe", "--json", str(probe)],
    ):
        proc = subprocess.run([*script, *extra], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(agree.read_text())
    assert data["models"]["torchvision_resnet18"]["activation_sites"] == 17
    assert all(r["ann_state_dict_unchanged"] for r in data["models"].values())
    assert all("allow-list" in m or "time-varying" in m for m in data["refusals"].values())
    doc = render_page(
        "CONVERTER.md", tmp_path / "CONVERTER.md", converter_agreement__json=agree, resnet18_probe__json=probe
    )
    assert "first 256 training images" in doc and "What this shows" in doc  # the hand-written notes are kept
    assert doc.count("| exact max-pool, max |") == 1


def test_committed_docs_are_rendered_from_their_json():
    """Every generated block in docs/ is what benchmarks/render.py makes of the JSON it names (no figures drawn)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "render.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_render_keeps_the_hand_written_text_and_refuses_unknown_sections(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import render

    (tmp_path / "a.json").write_text(json.dumps({"refusals": {"x": "no"}}))
    block = "<!-- generated: converter.refusals from a.json -->\n{}<!-- end generated -->\n"
    page = "Hand text.\n" + block.format("stale\n") + "More hand text.\n"
    got = render.render(page, tmp_path, render.Page())
    assert got == "Hand text.\n" + block.format("- x: `no`\n") + "More hand text.\n"
    assert render.render(got, tmp_path, render.Page()) == got  # idempotent
    with pytest.raises(ValueError, match="unknown section 'nosuch.table'"):
        render.render(page.replace("converter.refusals", "nosuch.table"), tmp_path, render.Page())
    with pytest.raises(ValueError, match="has no section 'nope'"):
        render.render(page.replace("converter.refusals", "converter.nope"), tmp_path, render.Page())


def test_study_state_refuses_another_recipe_and_drops_results_whose_inputs_changed(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import study

    path = tmp_path / "s_state.json"
    state = study.StudyState(path, {"seed": 0, "lr": 0.1})
    entry = state.entry("sources", "a")
    state.results(entry, {"test_samples": 10})["v1"] = {"acc": 50.0}
    state.save()
    again = study.StudyState(path, {"seed": 0, "lr": 0.1})
    entry = again.entry("sources", "a")
    assert again.results(entry, {"test_samples": 10}) == {"v1": {"acc": 50.0}}
    assert again.results(entry, {"test_samples": 20}) == {}  # other evaluation settings: converted again
    assert study.StudyState(path, {"seed": 0, "lr": 0.1, "new": 1}, defaults={"new": 1}).data["recipe"]["new"] == 1
    with pytest.raises(SystemExit, match=r"'seed': \(0, 1\)"):
        study.StudyState(path, {"seed": 1, "lr": 0.1})


@pytest.mark.slow  # ~2 min on 2 cores: two tiny trainings, 3 variants x 2 batches each, then a resumed rerun
def test_width_study_tiny_resumes_and_refuses_another_recipe(cifar10_dir, tmp_path):
    run_tiny("fidelity.py", cifar10_dir, tmp_path, "--widths", "0.5")
    docs, work = tmp_path / "docs", tmp_path / "work"
    data = json.loads((docs / "width_study_tiny.json").read_text())
    assert sorted(data["results"]) == ["0.03125", "0.0625"]
    for r in data["results"].values():
        assert r["ann_acc"] is not None and len(r["sha256"]) == 64
        assert len(r["snn_acc"]["membrane"]) == 7 and len(r["snn_acc"]["none"]) == 7
        assert sorted(r["snn_acc"]["bias"]) == ["16", "8"]
    assert not list(docs.glob("*.md")) and not list(docs.glob("*.png"))  # the study writes JSON only
    doc = render_blocks(docs, [b.format("width_study_tiny.json") for b in WIDTH_BLOCKS])
    assert "| 0.03125 | T: threshold alone |" in doc and "1 (paper)" in doc
    assert (docs / "width_study_tiny.png").stat().st_size > 1000

    # a lost test-batch result is recomputed on the rerun, nothing else: same numbers, same checkpoints
    state_path = work / "width_study_state.json"
    state = json.loads(state_path.read_text())
    del state["widths"]["0.0625"]["batches"]["none/1"]
    state_path.write_text(json.dumps(state))
    proc = run_tiny("fidelity.py", cifar10_dir, tmp_path, "--widths", "0.5")
    assert "== training" not in proc.stdout and "none batch 1" in proc.stdout and "membrane batch" not in proc.stdout
    again = json.loads((docs / "width_study_tiny.json").read_text())
    for key in ("ann_acc", "snn_acc", "sha256", "thresholds"):  # the recomputed batch's seconds differ
        assert {w: r[key] for w, r in again["results"].items()} == {w: r[key] for w, r in data["results"].items()}

    # another recipe in the same work dir is refused, naming what differs
    proc = run_tiny("fidelity.py", cifar10_dir, tmp_path, "--widths", "0.5", "--seed", "1", ok=False)
    assert proc.returncode != 0 and "'seed': (0, 1)" in proc.stderr

    # a setup check: one setting changed, fewer T, its own work dir; RESULTS sets it beside the study
    check = ["--widths", "0.5", "--conv-dropout", "0.2", "--timesteps", "16", "32", "64"]
    check += ["--study-name", "width_check_dropout", f"--work-dir={tmp_path / 'check'}"]
    study_json = (docs / "width_study_tiny.json").read_text()
    run_tiny("fidelity.py", cifar10_dir, tmp_path, *check)
    assert (docs / "width_study_tiny.json").read_text() == study_json  # the study is untouched
    got = json.loads((docs / "width_check_dropout_tiny.json").read_text())
    assert got["recipe"]["conv_dropout"] == 0.2 and got["recipe"]["timesteps"] == [16, 32, 64]
    assert all(sorted(r["snn_acc"]["membrane"], key=int) == ["16", "32", "64"] for r in got["results"].values())
    assert {w: r["sha256"] for w, r in got["results"].items()} != {w: r["sha256"] for w, r in data["results"].items()}
    checked = "width_study_tiny.json width_check_dropout_tiny.json"
    doc = render_blocks(docs, [f"fidelity.check from {checked}",
                               "fidelity.width_command from width_check_dropout_tiny.json"])  # fmt: skip
    assert "### Setup check: conv_dropout 0.0 -> 0.2" in doc
    assert "--timesteps 16 32 64 " in doc and "--study-name width_check_dropout" in doc
    for t in (16, 32, 64):  # the check's rows: loss with the study's recipe, with the check's, the change
        assert (
            sum(
                line.startswith(f"| 0.0625 | TS-membrane: threshold + V_th/2 membrane | {t} |")
                for line in doc.splitlines()
            )
            == 1
        )


def _sections(monkeypatch):
    """benchmarks/sections/fidelity.py: the fidelity sections of docs/RESULTS.md."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import sections.fidelity

    return sections.fidelity


def test_fit_quietly_leaves_a_checkpoint_to_resume_after_every_epoch(cifar10_dir, tmp_path, monkeypatch):
    """A study killed in epoch k loses at most that epoch: last.ckpt is on disk at every epoch start."""
    import argparse

    import torch

    from lightning_snn.module import ConversionModule

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import study

    resume = tmp_path / "epochs"
    seen = []

    class Probe(ConversionModule):
        def on_train_epoch_start(self) -> None:
            super().on_train_epoch_start()
            last = resume / "last.ckpt"
            seen.append((self.current_epoch, torch.load(last, weights_only=False)["epoch"] if last.exists() else None))

    module = Probe(arch="vgg11", width=0.0625, model_kwargs={"conv_dropout": 0.0, "fc_dropout": 0.0})
    args = argparse.Namespace(data_dir=str(cifar10_dir), epochs=3, seed=0, train_samples=64)
    study.fit_quietly(module, args, tmp_path, resume_dir=resume)
    assert seen == [(0, None), (1, 0), (2, 1)]


def _load_fidelity(monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("fidelity_under_test", REPO / "benchmarks" / "fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    return fidelity


def test_width_command_names_the_optimizer_and_only_settings_off_their_defaults(monkeypatch):
    fidelity = _sections(monkeypatch)
    recipe = {"epochs": 8, "warmup": 2, "lr": 0.01, "test_samples": 2000, "optimizer": "sgd"}
    payload = {"args": {"widths": [0.125, 0.25, 0.5]}, "recipe": recipe}
    cmd = fidelity.width_command_line(payload)
    assert cmd == (
        "python benchmarks/fidelity.py --widths 0.125 0.25 0.5 --epochs 8 --warmup 2 --lr 0.01 "
        "--test-samples 2000 --optimizer sgd"
    )
    old = {"args": {"widths": [0.125]}, "recipe": {**recipe, "lr": 0.001}}
    del old["recipe"]["optimizer"]  # a state stored before the optimizer was a recipe key: Adam
    assert "--optimizer" not in fidelity.width_command_line(old)
    assert fidelity.OPTIMIZERS["sgd"].startswith("SGD") and "adam" in fidelity.OPTIMIZERS
    # a seed check: its command must name the seed (session 7's first seed-check doc printed it without)
    full = {**recipe, "seed": 0, "train_samples": None, "calibration_samples": 5000, "batch_size": 250}
    assert fidelity.width_command_line({**payload, "recipe": full}) == cmd  # a stored recipe has every key
    seed = {"args": {"widths": [0.125], "study_name": "width_check_seed", "work_dir": "runs/s"},
            "recipe": {**full, "seed": 1}}  # fmt: skip
    assert "--optimizer sgd --seed 1 --study-name width_check_seed" in fidelity.width_command_line(seed)


@pytest.mark.slow  # ~1 min on 2 cores: two tiny trainings, then their simulations from a folder of 16 training images
def test_width_study_trains_first_then_simulates_without_the_training_images(cifar10_dir, tmp_path):
    """--train-only trains every width and stores its thresholds and ANN counts; a later sitting
    simulates with only the test images at hand (what a GPU machine that cannot hold the training
    set gets)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from make_cifar_subset import make_subset
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    proc = run_tiny("fidelity.py", cifar10_dir, tmp_path, "--widths", "0.5", "--optimizer", "sgd", "--train-only")
    assert "batch 0" not in proc.stdout  # nothing simulated
    state = json.loads((tmp_path / "work" / "width_study_state.json").read_text())
    assert state["recipe"]["optimizer"] == "sgd"
    for e in state["widths"].values():
        assert e["thresholds"] and all(k.startswith("ann/") for k in e["batches"])
    few = tmp_path / "few"
    make_subset(cifar10_dir, few, train=16, test=64)
    run_tiny("fidelity.py", cifar10_dir, tmp_path, "--widths", "0.5", "--optimizer", "sgd", f"--data-dir={few}")
    data = json.loads((tmp_path / "docs" / "width_study_tiny.json").read_text())
    for r in data["results"].values():
        assert len(r["snn_acc"]["membrane"]) == 7 and r["sim_devices"]["membrane"][0].startswith("cpu")
    assert "SGD (momentum 0.9, weight decay 5e-4)" in render_blocks(tmp_path / "docs", [
        "fidelity.width_setup from width_study_tiny.json"])  # fmt: skip


def _load_script(monkeypatch, name: str):
    import importlib.util

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_standard_error_from_per_image_outcomes(monkeypatch):
    ss = _load_script(monkeypatch, "shift_scale")
    # two settings on 8 images that disagree on 3 (one gain, two losses): McNemar's standard error
    a, b = "11110000", "10011000"
    assert ss.paired_se(a, b) == pytest.approx(100 * (3 - 1 / 8) ** 0.5 / 8)
    assert ss.paired_se(a, a) == 0.0


@pytest.mark.slow  # ~1 min on 2 cores: two tiny trainings, then 3 scales x 2 T x 2 modes per network
def test_shift_scale_script_tiny_resumes(cifar10_dir, tmp_path):
    run_tiny("shift_scale.py", cifar10_dir, tmp_path)
    data = json.loads((tmp_path / "docs" / "shift_scale_tiny.json").read_text())
    for net in ("relu", "threshold"):
        accs = data["networks"][net]["snn_acc"]
        assert set(accs) == {"bias", "membrane"} and set(accs["bias"]) == {"0", "1", "2"}
        assert accs["bias"]["0"] == accs["membrane"]["0"]  # scale 0: no shift either way
    doc = render_blocks(tmp_path / "docs", [f"shift_scale.{b} from shift_scale_tiny.json" for b in ("command",
                        "setup", "accuracy")])  # fmt: skip
    assert "--tiny" in doc and "| bias | 1 |" in doc and "![SNN accuracy against the shift scale]" in doc
    assert (tmp_path / "docs" / "shift_scale_tiny.png").stat().st_size > 1000  # drawn by the renderer
    proc = run_tiny("shift_scale.py", cifar10_dir, tmp_path)  # a rerun finds everything done
    assert "batch 0" not in proc.stdout


def test_results_doc_labels_each_network_and_sets_a_check_beside_its_own_network(tmp_path):
    """docs/RESULTS.md rendered with a width study on the paper's network: its section says so, the
    five-pool study's and the GPU run's say theirs, and a five-pool check is not read against it."""
    new = json.loads((REPO / "docs" / "width_study_five_pool.json").read_text())
    new["network"] = "paper"
    new["results"] = {"0.125": new["results"]["0.125"]}
    (tmp_path / "width_study.json").write_text(json.dumps(new))
    doc = render_page("RESULTS.md", tmp_path / "out" / "RESULTS.md", width_study__json=tmp_path / "width_study.json")
    paper, five_pool = doc.split("## Width study: does the conversion loss shrink as VGG-16 grows?")[1:3]
    assert paper.split("\n")[0] == "" and five_pool.startswith(" (the earlier five-pool network)")
    # the "Measured on" line and the setup's first line name the network its JSON records
    assert "Measured on the paper's VGG-16" in paper and "Setup check" not in paper
    assert "- the paper's VGG-16 (four average pools" in paper
    assert doc.count("**Measured on the earlier five-pool VGG-16") == 3  # results.json, the old width study, GPU
    assert doc.count("- the earlier five-pool VGG-16") == 2  # results.json, the old width study
    assert "Setup check: seed 0 -> 1" in five_pool
    assert "| 0.125 | | T: threshold alone, loss at T = 16 | +33.95 | +33.95 | +0.00 |" in doc  # the same numbers
    assert "The paper's Tables 2 and 4 at CPU scale" in doc


def test_reproduce_cells_are_rendered_from_the_runs_beside_the_papers_numbers(monkeypatch):
    pt = _load_script(monkeypatch, "paper_tables")
    import sections.paper_tables as sections

    def run(ann, snn, clip, shift="none", avg=None):
        r = {"ann_acc": ann, "snn_acc": {str(t): a for t, a in snn.items()}, "threshold_clip_on": clip,
             "shift": shift, "shift_scale": 1.0, "num_test_images": 1000}  # fmt: skip
        if avg:
            r["average_over"] = {"first": 400, "last": 600, "mean_acc": avg[0], "std_acc": avg[1]}
        return r

    ts = {16: 40.0, 32: 48.0, 64: 49.5, 128: 50.0, 256: 50.25, 512: 50.5}
    payload = {"scale": pt.SCALE, "runs": {
        "vgg16_relu": run(50.0, {512: 49.0}, False, avg=(49.5, 0.25)),
        "vgg16_s": run(50.0, {32: 30.0, 512: 49.75}, False, "bias"),
        "vgg16_t": run(51.0, {32: 47.0, 512: 50.75}, True, avg=(50.875, 0.125)),
        "vgg16_ts": run(51.0, ts, True, "bias"),
        "vgg16_ts_constant": run(51.0, {600: 50.5}, True, "constant", avg=(50.5, 0.0)),
    }}  # fmt: skip
    refs = json.loads((REPO / "docs" / "paper_numbers.json").read_text())
    t1 = sections.reproduce_table1(None, payload, refs)
    vgg = t1.split("### CIFAR-10 + VGG-16")[1].split("###")[0]
    assert "| 92.29 | -0.2 (0.05) | 40.00† | 10.00 (11.00)† |" in vgg  # TS at T = 16: 50 - 40 against the ReLU ANN
    assert "| 50.88 ± 0.12† | -0.88 (0.12)† |" in vgg  # T over 400..600
    assert "| 49.75† | 0.25† |" in vgg  # S at 512: its ANN is the ReLU one
    t2 = sections.reproduce_table2(None, payload, refs)
    assert "| 91.82 ± 0.09 | 49.50 ± 0.25† |" in t2 and "| 50.50 ± 0.00† |" in t2
    t4 = sections.reproduce_table4(None, payload, refs).split("### Table 4: ResNet-20 on CIFAR-10")[0]
    assert "| 29.71 | 20.00† |" in t4 and "| 0.06 (0.31) | 3.00 (4.00)† |" in t4
    cifar = t1.split("### CIFAR-10 + CIFARNet")[1].split("###")[0]
    assert cifar.count("| — | — |") == 6  # no run: no number
    # a network run at a smaller scale carries its own mark, in every table, and its commands use its scale
    payload["runs"].update({"cifarnet_relu": run(40.0, {512: 39.0}, False), "cifarnet_ts": run(41.0, ts, True, "bias")})
    payload["reduced"] = {"cifarnet": pt.REDUCED["cifarnet"]}
    cifar = sections.reproduce_table1(None, payload, refs).split("### CIFAR-10 + CIFARNet")[1].split("###")[0]
    assert "| 40.00‡ | 0.00 (1.00)‡ |" in cifar and "†" not in cifar
    epochs, images = pt.REDUCED["cifarnet"]["epochs"], pt.REDUCED["cifarnet"]["test_images"]
    assert f"--trainer.max_epochs {epochs} " in pt.fit_command("cifarnet", "t")
    assert f"'T_max': {epochs}}}" in pt.fit_command("cifarnet", "t")
    assert f"--snn.max_test_samples {images} " in pt.command("cifarnet", "ts")
    assert "--trainer.max_epochs 8 " in pt.fit_command("vgg16", "t")
    assert "{dropout: 0.0}" in pt.fit_command("resnet20", "t")


def test_a_width_study_of_the_five_pool_network_is_not_continued_on_the_papers(monkeypatch, tmp_path):
    fidelity = _load_fidelity(monkeypatch)
    args = argparse.Namespace(**{k: fidelity.RECIPE_DEFAULTS.get(k) for k in fidelity.RECIPE_KEYS})
    fresh = fidelity.load_width_state(args, tmp_path / "none.json").data
    assert fresh["network"] == "paper" and fresh["widths"] == {}
    old = tmp_path / "old.json"  # a state written before issue 24 has no "network"
    old.write_text(json.dumps({"recipe": fresh["recipe"], "widths": {}}))
    with pytest.raises(SystemExit, match="five-pool"):
        fidelity.load_width_state(args, old)
