"""The tables over finished runs: mean +- std over repeated runs, and the paper's two losses (Tables 4-5)."""

from __future__ import annotations

import json
import statistics

import pytest

from lightning_snn.results_tables import load, losses_table, main, runs_table, variant


def result(tmp_path, name, ann, snn, clip, shift="none", n=200, average=None, **extra) -> str:
    data = {
        "schema_version": 1,
        "thresholds": {"features.1": 1.0},
        "ann_acc": ann,
        "snn_acc": {str(t): a for t, a in snn.items()},
        "threshold_clip_on": clip,
        "shift": shift,
        "shift_scale": 1.0,
        "num_test_images": n,
        **extra,
    }
    if average is not None:
        data["average_over"] = {"first": 400, "last": 600, "mean_acc": average[0], "std_acc": average[1]}
    path = tmp_path / name / "snn_results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return str(path)


def test_runs_gives_mean_and_sample_std_per_T(tmp_path, capsys):
    anns, t16, t32 = [80.5, 81.0, 79.0], [70.0, 72.5, 71.0], [78.0, 79.0, 79.5]
    files = [
        result(tmp_path, f"s{i}", a, {16: b, 32: c, 64: 1.0}, True, average=(c + 1, 0.1))
        for i, (a, b, c) in enumerate(zip(anns, t16, t32, strict=True))
    ]
    lines = runs_table([load(f) for f in files[:2]] + [load(tmp_path / "s2")])  # a run folder works too
    row = next(line for line in lines if line.startswith("| accuracy"))
    for values in (anns, t16, t32):
        assert f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" in row
    assert f"{statistics.fmean([c + 1 for c in t32]):.2f} ± {statistics.stdev([c + 1 for c in t32]):.2f}%" in "\n".join(
        lines
    )
    assert main(["runs", *files]) == 0 and "T=64" in capsys.readouterr().out


def test_losses_against_the_relu_ann_outside_and_the_own_ann_in_brackets(tmp_path):
    relu = load(result(tmp_path, "relu", 90.0, {32: 60.0, 64: 85.0}, False))
    s = load(result(tmp_path, "s", 90.0, {32: 61.0, 64: 87.5}, False, shift="bias"))
    t = load(result(tmp_path, "t", 91.5, {32: 88.0, 64: 91.0}, True, average=(91.25, 0.05)))
    ts = load(result(tmp_path, "ts", 91.5, {32: 90.0, 64: 91.25}, True, shift="bias"))
    assert [variant(r) for r in (relu, s, t, ts)] == ["ReLU", "S", "T", "TS"]
    lines = losses_table(relu, [s, t, ts])
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and "%" in line}
    assert rows["S"].endswith("| 29.00 | 2.50 | — |")  # 90 - 61, 90 - 87.5: one number, its ANN is the ReLU one
    assert rows["T"].endswith("| 2.00 (3.50) | -1.00 (0.50) | -1.25 (0.25) |")  # 90 - 88 (91.5 - 88) ...
    assert rows["TS"].endswith("| 0.00 (1.50) | -1.25 (0.25) | — |")


@pytest.mark.parametrize("what", ["images", "relu_is_threshold", "other_relu_ann"])
def test_losses_refuse_runs_that_cannot_be_compared(tmp_path, what):
    relu = result(tmp_path, "relu", 90.0, {32: 60.0}, what == "relu_is_threshold")
    row = result(
        tmp_path,
        "row",
        89.0 if what == "other_relu_ann" else 91.0,
        {32: 88.0},
        what != "other_relu_ann",
        n=100 if what == "images" else 200,
    )
    with pytest.raises(ValueError, match={"images": "same images", "relu_is_threshold": "plain ReLU",
                                          "other_relu_ann": "own checkpoint"}[what]):  # fmt: skip
        losses_table(load(relu), [load(row)])
    assert main(["losses", "--relu", relu, row]) == 2


def test_load_says_what_is_wrong(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a snn_results.json of lightning-snn"):
        load(tmp_path / "x.json")
    with pytest.raises(ValueError, match="no such file"):
        load(tmp_path / "missing.json")
    (tmp_path / "v.json").write_text('{"schema_version": 99, "ann_acc": 1.0, "snn_acc": {}, "thresholds": {}}')
    with pytest.raises(ValueError, match="schema_version 99"):  # another version's file, read through results.py
        load(tmp_path / "v.json")
