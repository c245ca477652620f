"""`sal3d bench`: every row and every JSON figure from a tiny run; the pieces (clip, MAC count, peaks,
targets, table) on their own."""

from __future__ import annotations

import json
import math

import pytest

from sal3d.pipeline.datasets import discover
from sal3d.pipeline.ffmpeg import trim_video
from sal3d.pipeline.frames import FrameReader
from sal3d.pipeline.sample import make_clips
from sal3d.pipeline.trunk import trunk_macs
from sal3d.stages.bench.machine import peak_tflops
from sal3d.stages.bench.report import ROWS, SCHEMA, evaluate_targets, render_table

FIGURE_KEYS = [key for key, _, _ in ROWS]
MACHINE_KEYS = ("cpu_model", "cpu_count", "gpu", "torch", "python", "loadavg_start", "loadavg_end")
TARGETS = 7


def _invoke(*args):
    from click.testing import CliRunner

    from sal3d.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
def test_bench_cli_prints_every_row_and_writes_every_figure(tmp_path):
    path = tmp_path / "bench.json"
    result = _invoke("bench", "--device", "cpu", "--frames", 3, "--repeats", 1, "--batch-size", 1,
                     "--predict-frames", 1, "--json", path)
    assert result.exit_code == 0, result.output + repr(result.exception)
    for _, label, unit in ROWS:
        assert f"| {label} |" in result.output, label
    record = json.loads(path.read_text())
    assert record["schema"] == SCHEMA and record["complete"] is True
    for key in MACHINE_KEYS:
        assert key in record["machine"], key
    assert record["machine"]["gpu"] is None and record["settings"]["device"] == "cpu"
    assert record["settings"]["dataset_kind"] == "generated" and record["settings"]["frames"] == 3
    for key in FIGURE_KEYS:
        figure = record["figures"][key]
        assert figure["unit"] == dict((k, u) for k, _, u in ROWS)[key]
        assert len(figure["runs"]) == 1 and figure["bound"], key
        assert math.isfinite(figure["value"]) and figure["value"] > 0, (key, figure)
    extract = record["figures"]["extract"]
    assert extract["bytes_per_frame"] > 0 and extract["video_sizes"] == ["640x360"]
    assert extract["fraction_of_bound"] > 0 and extract["bound_by"] in ("decode", "trunk")
    # extract stores exactly what the trunk computes on the same frames (the same batches, on a CPU)
    assert extract["max_difference_from_trunk"] == 0, extract["max_difference_from_trunk"]
    assert record["figures"]["train_end_to_end"]["ratio_cached_to_end_to_end"] > 0
    assert record["figures"]["projection"]["paper_hours"] == 160
    constants = record["constants"]
    assert 15.3 < constants["trunk_gmac_per_frame"] < 15.4
    assert 34 < constants["decoder_gmac_forward_per_window"] < 35.5
    assert len(record["targets"]) == TARGETS
    statuses = {t["target"]: t["status"] for t in record["targets"]}
    assert set(statuses.values()) <= {"PASS", "FAIL", "n.a."}
    # extract's fraction of its bound is its rate over its slowest stage's, and its target's verdict follows
    # from that measured fraction
    stage_rates = extract["stage_rates"]
    assert extract["bound_by"] == min(stage_rates, key=stage_rates.get)
    assert extract["fraction_of_bound"] == pytest.approx(extract["value"] / stage_rates[extract["bound_by"]])
    measured = {t["target"]: t["measured"] for t in record["targets"]}
    assert measured["extract >= 0.9 x min(decode, trunk)"] == extract["fraction_of_bound"]
    assert statuses["extract >= 0.9 x min(decode, trunk)"] == ("PASS" if extract["fraction_of_bound"] >= 0.9 else "FAIL")
    # CPU: the cached-to-end-to-end target applies, with the verdict of the measured ratio
    ratio = record["figures"]["train_end_to_end"]["ratio_cached_to_end_to_end"]
    assert measured["train (cached) >= 1.8 x train (end to end), on CPU"] == ratio
    assert statuses["train (cached) >= 1.8 x train (end to end), on CPU"] == ("PASS" if ratio >= 1.8 else "FAIL")
    # CPU, generated clip: the GPU targets and the real-footage store target do not apply
    assert statuses["loader >= 3 x train (cached), on a GPU"] == "n.a."
    assert statuses["store <= 100 KB/frame on real footage"] == "n.a."
    assert statuses["projection <= 2 h, on one H100/H200"] == "n.a."
    assert record["table"] in result.output


def test_generated_clip_is_640x360_dhf1k_layout_and_trims(tmp_path):
    ids = make_clips(tmp_path / "clip", videos=2, frames=7)
    assert ids == ["0001", "0002"]
    layout, entries = discover(tmp_path / "clip")
    assert layout == "dhf1k" and [e.video_id for e in entries] == ids
    for entry in entries:
        info = FrameReader(entry).info()
        assert (info.frame_count, info.width, info.height) == (7, 640, 360)
        assert len(entry.map_files()) == 7 and entry.split == "train"
    trimmed = trim_video(entries[0].source, tmp_path / "cut" / "001.avi", 3)
    assert trimmed is not None
    reader = FrameReader(discover(tmp_path / "cut")[1][0])
    assert reader.info().frame_count == 3
    assert (reader.read(0, 3) == FrameReader(entries[0]).read(0, 3)).all()  # the same bitstream, cut


def test_trunk_macs_and_peaks():
    assert trunk_macs() == 15_346_630_656  # VGG-16 conv1_1 .. conv5_3 at 224x224
    assert peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert peak_tflops("NVIDIA H200")[0] == 989.0
    assert peak_tflops(None)[0] is None and peak_tflops("AMD EPYC")[0] is None


def _result(device: str, gpu: str | None, kind: str = "given") -> dict:
    figures = {
        "decode": {"value": 3000.0, "runs": [3000.0], "bound": "b"},
        "trunk": {"value": 9000.0, "runs": [9000.0], "bound": "b"},
        "extract": {"value": 2800.0, "runs": [2800.0], "bound": "b", "fraction_of_bound": 2800 / 3000,
                    "bound_by": "decode", "bytes_per_frame": 97_000.0, "video_sizes": ["640x360"]},
        "loader": {"value": 6000.0, "runs": [6000.0], "bound": "b", "ratio_to_train_cached": 3.5},
        "train_cached": {"value": 1700.0, "runs": [1700.0], "bound": "b"},
        "train_end_to_end": {"value": 100.0, "runs": [100.0], "bound": "b", "ratio_cached_to_end_to_end": 17.0},
        "predict_store": {"value": 900.0, "runs": [900.0], "bound": "b"},
        "predict_video": {"value": 300.0, "runs": [300.0], "bound": "b"},
        "projection": {"value": 1.92, "runs": [1.92], "bound": "b"},
    }
    return {"figures": figures, "machine": {"gpu": gpu, "cpu_count": 16, "cpu_model": "x", "torch": "t"},
            "settings": {"device": device, "dtype": "bfloat16", "dataset_kind": kind, "weights": "random",
                         "frames": 4096, "videos": ["0001"], "repeats": 3, "dataset": None}}


def test_targets_apply_by_device_and_data():
    on_h100 = {t["target"]: t["status"] for t in evaluate_targets(_result("cuda", "NVIDIA H100 80GB HBM3"))}
    assert on_h100 == {
        "extract >= 0.9 x min(decode, trunk)": "PASS",
        "train (cached) >= 1.8 x train (end to end), on CPU": "n.a.",
        "loader >= 3 x train (cached), on a GPU": "PASS",
        "store <= 100 KB/frame on real footage": "PASS",
        "projection <= 2 h, on one H100/H200": "PASS",
        "extract >= 2,000 frames/s on 640x360, on one H100/H200": "PASS",
        "predict >= 1,000 frames/s from a store, on one H100/H200": "FAIL",
    }
    on_a100 = {t["target"]: t["status"] for t in evaluate_targets(_result("cuda", "NVIDIA A100", "generated"))}
    assert on_a100["projection <= 2 h, on one H100/H200"] == "n.a."
    assert on_a100["store <= 100 KB/frame on real footage"] == "n.a."
    assert on_a100["loader >= 3 x train (cached), on a GPU"] == "PASS"
    result = _result("cpu", None)
    result["figures"]["train_end_to_end"]["ratio_cached_to_end_to_end"] = 1.5
    del result["figures"]["predict_video"]
    targets = evaluate_targets(result)
    on_cpu = {t["target"]: t["status"] for t in targets}
    assert on_cpu["train (cached) >= 1.8 x train (end to end), on CPU"] == "FAIL"
    assert on_cpu["loader >= 3 x train (cached), on a GPU"] == "n.a."
    result["targets"], result["machine"]["loadavg_start"] = targets, 1.0
    table = render_table(result)
    assert "| predict (video file) | n.a. |" in table and "| FAIL |" in table
