"""The conversion callback's own contracts: validated settings, atomic result files."""

from __future__ import annotations

import json

import pytest

from lightning_snn.callbacks.snn_conversion import SNNConversion, shard, write_json_atomic


def test_results_file_is_never_half_written(tmp_path):
    path = tmp_path / "snn_results.json"
    write_json_atomic(path, {"snn_acc": {"16": 90.0}})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})  # fails while serialising
    assert json.loads(path.read_text()) == {"snn_acc": {"16": 90.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["snn_results.json"]  # no temp file left


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"timesteps": []}, "empty"),
        ({"timesteps": [16, -1]}, "> 0"),
        ({"shift": "half"}, "shift"),
        ({"readout": "vote"}, "readout"),
        ({"calibration_samples": 0}, "calibration_samples"),
        ({"max_test_samples": -5}, "max_test_samples"),
        ({"time_chunk": 0}, "time_chunk"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SNNConversion(**kwargs)


def test_timesteps_are_sorted_and_deduplicated():
    assert SNNConversion(timesteps=[64, 16, 64, 32]).timesteps == [16, 32, 64]


def test_shards_cover_the_set_once():
    data = list(range(10))
    parts = [list(shard(data, r, 3)) for r in range(3)]
    assert sorted(sum(parts, [])) == data
    assert shard(data, 0, 1) is data
