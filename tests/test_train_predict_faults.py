"""Faults met by train-decoder and predict: damaged checkpoints and run files, non-finite weights and
maps, a store still being written, a run stopped by a damaged chunk; and the --videos option as the
README writes it.

Stores are written directly (small random features, no trunk) as in test_train / test_predict; the
decoder runs on at most two frames.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sal3d.cli import main
from sal3d.pipeline.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.store import FeatureStore, StoreError
from sal3d.pipeline.windows import weighting_coefficients
from sal3d.stages.train import TrainConfig, split_videos, train, write_run_config

from test_predict import FAKE_TRUNK as PREDICT_TRUNK, make_checkpoint, random_features, write_store
from test_train import make_store

README = Path(__file__).resolve().parents[1] / "README.md"
ONE_STEP = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--val-windows", "1", "--bn-windows", "1",
            "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result) -> str:
    """The CLI's one error line (and that it is one line, with no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None)))
    (line,) = [text for text in result.output.splitlines() if text.startswith("sal3d: error:")]
    return line


# ---------------------------------------------------------------------------- checkpoints


def test_a_checkpoint_cut_short_or_of_another_kind_is_one_whole_line(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.zeros(64)}, "config": {}}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    text = tmp_path / "text.pt"
    text.write_text("hello")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    expected = {cut: "truncated or damaged (200 bytes; a PyTorch zip archive that cannot be read: ",
                text: "not a sal3d checkpoint (not a PyTorch file: 5 bytes beginning b'hello')",
                empty: "not a sal3d checkpoint (an empty file)"}
    for path, start in expected.items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: {start}"), message
        assert "\n" not in message and message.endswith(")") and "another kind of file" not in message
        assert "internal miniz error" not in message  # torch's advice is cut at a sentence's end, not mid-way
    line = error_line(invoke("predict", tmp_path / "no-store.zarr", text, tmp_path / "out"))
    assert line == f"sal3d: error: {text}: not a sal3d checkpoint (not a PyTorch file: 5 bytes beginning b'hello')"


def test_non_finite_weights_are_refused_naming_the_file_and_the_tensor(tmp_path):
    state = SaliencyDecoder().state_dict()
    state["block6.2.weight"].view(-1)[7] = float("nan")
    state["block6.2.bias"].fill_(float("inf"))
    path = tmp_path / "diverged.pt"
    save_checkpoint(path, {"model": state, "config": {
        "weighting": "tanh", "coefficients": list(weighting_coefficients("tanh")), "trunk": PREDICT_TRUNK,
        "store_format_version": 3}})
    write_store(tmp_path / "features.zarr", PREDICT_TRUNK, {"a": random_features(1, seed=0)}, 24, 32)
    line = error_line(invoke("predict", tmp_path / "features.zarr", path, tmp_path / "out", "--device", "cpu"))
    assert f"{path}: non-finite weights: block6.2.weight holds 1 NaN or infinite value(s)" in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_non_finite_map_fails_its_video_and_unfinished_videos_are_named(tmp_path):
    """Video a's features hold a NaN (its map would be blank): a fails, named, with no PNG; b is predicted;
    c, still being written, is named as left out; the exit status is 1."""
    store_path = tmp_path / "features.zarr"
    bad = random_features(1, seed=1)
    bad[0, 3, 4, 5] = np.nan
    write_store(store_path, PREDICT_TRUNK, {"a": bad, "b": random_features(1, seed=2)}, 24, 32)
    writer = FeatureStore(str(store_path), mode="a").begin_video("c", 4, False, {"split": "val"})
    make_checkpoint(tmp_path / "decoder.pt", PREDICT_TRUNK)
    out = tmp_path / "out"
    try:
        result = invoke("predict", store_path, tmp_path / "decoder.pt", out, "--batch-size", 1, "--device", "cpu")
    finally:
        writer.release()
    assert result.exit_code == 1, result.output
    assert re.search(r"predict: not predicted: c \(not complete in the store: being written by another run "
                     r"\(pid \d+", result.output), result.output
    assert ("predict: failed a: the decoder gave NaN or infinite values for 1 frame(s) (frame number 1)"
            in result.output)
    assert "1 videos predicted, 0 already complete, 1 failed; 1 frames" in result.output
    assert not list(out.glob("a/*.png"))  # no blank map written
    assert (out / "b" / "0001.png").is_file()
    run = json.loads((out / "predict.json").read_text())["runs"][-1]
    assert list(run["failed"]) == ["a"] and list(run["left_out"]) == ["c"]


# ---------------------------------------------------------------------------- train-decoder


def test_resume_with_a_damaged_config_json_is_one_line(tmp_path):
    make_store(tmp_path / "s.zarr", {"a": (2, "train"), "v": (2, "val")})
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.json"
    for content, problem in [('{"settings": {"store": "s', "damaged, not a run's config.json (not JSON: "),
                             ("{}", "damaged, not a run's config.json (it lacks settings, store, videos)"),
                             ('{"settings": {}, "store": {}, "videos": {}}', "(it lacks settings.store, ")]:
        config.write_text(content)
        line = error_line(invoke("train-decoder", tmp_path / "s.zarr", run, "--resume"))
        assert line.startswith(f"sal3d: error: --resume: {config}: ") and problem in line, line


def test_a_new_run_stopped_by_a_damaged_chunk_leaves_no_run_directory(tmp_path):
    """The chunk passes the up-front check (same size) and fails its checksum when the first step reads
    it: the run stops before its first checkpoint, RUN_DIR is left as it was, and a rerun is not told
    to pass --resume."""
    store = tmp_path / "s.zarr"
    make_store(store, {"a": (4, "train"), "v": (2, "val")})
    chunk = store / "videos" / "a" / "features" / "c.0.0.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    for run in (tmp_path / "run", tmp_path / "run"):  # twice: the rerun meets the damage, not a half-made run
        line = error_line(invoke("train-decoder", store, run, *ONE_STEP))
        assert "video a is damaged: features chunk 0" in line and "--resume" not in line, line
        assert not run.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    error_line(invoke("train-decoder", store, existing, *ONE_STEP))
    assert existing.is_dir() and not list(existing.iterdir())  # a folder the user made stays, empty


def test_training_names_the_videos_still_being_written(tmp_path):
    path = tmp_path / "s.zarr"
    store = make_store(path, {"a": (4, "train")})
    writing = store.begin_video("b", 4, True, {"split": "train"})  # a writer alive
    store.begin_video("c", 4, True, {"split": "train"}).release()  # a writer gone: abandoned
    try:
        with pytest.raises(StoreError) as caught:
            train(TrainConfig(str(path), tmp_path / "early"))
        message = str(caught.value)
        assert "1 usable video(s) and none of split 'val': at least two are needed" in message
        assert re.search(r"2 incomplete, not used: b \(being written by another run \(pid \d+ .*\), c \(incomplete",
                         message), message
        assert not (tmp_path / "early").exists()

        make_store(path, {"v": (2, "val")}, seed=1)
        config = TrainConfig(str(path), tmp_path / "run")
        split = split_videos(FeatureStore(str(path)), config.seed)
        write_run_config(config, FeatureStore(str(path)), split, torch.device("cpu"))
    finally:
        writing.release()
    assert (split.train, split.val) == ({"a": 4}, {"v": 2})
    ignored = json.loads((tmp_path / "run" / "config.json").read_text())["videos"]["ignored"]
    assert sorted(ignored) == ["b", "c"] and ignored["b"].startswith("not complete: being written by another run")
    assert ignored["c"].startswith("not complete: incomplete")


# ---------------------------------------------------------------------------- --videos as the README writes it


def _synopses() -> dict[str, str]:
    """{command: its synopsis} from the README's code blocks (a line ``sal3d NAME ...`` and its indented
    continuation lines)."""
    found, current = {}, None
    for block in README.read_text().split("```")[1::2]:
        for line in block.splitlines():
            start = re.match(r"sal3d ([\w-]+) ", line)
            if start:
                current = start.group(1)
                found[current] = found.get(current, "") + " " + line
            elif current and line.startswith(" "):
                found[current] += " " + line.strip()
            else:
                current = None
    return found


def _required_arguments(command, tmp_path: Path) -> list[str]:
    """A value for each argument of `command` that its type accepts: a file or a folder that exists
    (``m=FOLDER`` for compare's NAME=PRED_DIR)."""
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"")
    values = []
    for param in command.params:
        if isinstance(param, click.Argument):
            dir_okay = getattr(param.type, "dir_okay", True)
            value = str(tmp_path if dir_okay else a_file)
            values.append(f"m={value}" if "=" in (param.metavar or "") else value)
    return values


def test_every_videos_option_works_in_the_form_the_readme_writes(tmp_path):
    synopses = _synopses()
    with_videos = [name for name, command in main.commands.items() if any(p.name == "videos" for p in command.params)]
    assert with_videos
    for name in with_videos:
        command = main.commands[name]
        written = re.search(r"\[--videos ([^\]]*\]?)\]", synopses[name])
        assert written, f"README's synopsis of sal3d {name} lacks --videos: {synopses[name]}"
        (option,) = [p for p in command.params if p.name == "videos"]
        assert written.group(1) == option.metavar == "ID[,ID...]"  # the README, --help and the parser agree
        arguments = _required_arguments(command, tmp_path)
        for form in (["--videos", "0001,0601"], ["--videos", "0001", "--videos", "0601"],
                     ["--videos", "0001", "--videos", " 0601 "]):
            context = command.make_context(name, [*arguments, *form])
            assert context.params["videos"] == ("0001", "0601"), (name, form)
        with pytest.raises(click.BadParameter, match="empty video id"):
            command.make_context(name, [*arguments, "--videos", "0001,"])
