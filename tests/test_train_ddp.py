"""Data-parallel training: `torchrun --nproc-per-node 2` on the CPU (gloo), and the single-process path.

The torchrun runs use the session's sample store (conftest) and only a couple of steps of one window:
a decoder step takes seconds on a CPU, and the two ranks share this machine's cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from sal3d.pipeline import distributed
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.store import FeatureStore
from sal3d.stages.train import TrainConfig, TrainError, train

ROOT = Path(__file__).resolve().parents[1]
FAKE_TRUNK = {"arch": "fake (tests)", "weights": "fake:test", "weights_sha256": "0" * 64,
              "preprocessing": "none", "feature_shape": [512, 14, 14]}
RUN_FILES = {"config.json", "log.jsonl", "steps.jsonl", "last.pt", "best.pt"}
STEPS = 2  # per rank; the sample's 12 training windows allow 6 batches of 1 per rank
SMALL_RUN = ["--epochs", 1, "--steps-per-epoch", STEPS, "--batch-size", 1, "--val-windows", 1, "--bn-windows", 1,
             "--lr", 1e-3, "--seed", 5, "--device", "cpu"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun_command(*args, processes: int = 2) -> tuple[list[str], dict]:
    """The command line and environment of `torchrun --nproc-per-node PROCESSES -m sal3d ARGS` (the installed
    sal3d), run from the repository root with one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "sal3d", *map(str, args)]
    return command, env


def torchrun(*args, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `torchrun --nproc-per-node 2 -m sal3d ARGS` to its end (see torchrun_command)."""
    command, env = torchrun_command(*args)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, sample_store) -> tuple[Path, subprocess.CompletedProcess]:
    run = tmp_path_factory.mktemp("ddp") / "run"
    result = torchrun("train-decoder", sample_store, run, *SMALL_RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    return run, result


def test_torchrun_two_ranks_train_identical_replicas(ddp_run):
    run, result = ddp_run
    # The trainer compares every parameter and buffer of the replicas with rank 0's after the run.
    assert "train-decoder: ranks agree: max |w_r - w_0| = 0 over 2 ranks" in result.stderr, result.stderr
    assert "effective batch 2" in result.stderr and "learning rate 0.001, unchanged" in result.stderr


def test_torchrun_only_rank_zero_writes_and_speaks(ddp_run):
    run, result = ddp_run
    assert {p.name for p in run.iterdir()} == RUN_FILES  # no second writer's temporary files either
    steps = _jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))  # a line per step, once
    log = _jsonl(run / "log.jsonl")
    assert [(r["epoch"], r["step"]) for r in log] == [(1, STEPS)]
    assert log[0]["train_loss"] == pytest.approx(sum(s["loss"] for s in steps) / STEPS, rel=1e-6)
    assert result.stderr.count("epoch 1/1: train loss") == 1 and result.stderr.count("Best checkpoint:") == 1
    # both ranks validate; rank 0 alone shows it (its final progress line, once)
    assert [line.startswith("validate epoch 1/1: 100.0%") for line in result.stderr.splitlines()
            if "in all" in line].count(True) == 1, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["distributed"]["world_size"] == 2 and config["distributed"]["backend"] == "gloo"
    assert config["distributed"]["batch_per_rank"] == 1 and config["distributed"]["effective_batch"] == 2
    assert config["distributed"]["lr_effective"] == 1e-3 and config["distributed"]["lr_rule"].startswith("unchanged")
    for name in ("best.pt", "last.pt"):  # the plain decoder's weights: predict and resume load them as ever
        checkpoint = torch.load(run / name, weights_only=True)
        assert not any(key.startswith("module.") for key in checkpoint["model"])
        SaliencyDecoder().load_state_dict(checkpoint["model"])
    assert torch.load(run / "last.pt", weights_only=True)["step"] == STEPS


def test_resuming_with_another_world_size_is_refused(ddp_run, monkeypatch):
    run, _ = ddp_run
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    config = json.loads((run / "config.json").read_text())
    with pytest.raises(TrainError, match=r"trained by 2 process\(es\), this run has 1"):
        train(TrainConfig(config["settings"]["store"], run, resume=True), explicit=set())
    assert not dist.is_initialized()


def test_torchrun_refusal_ends_every_rank(tmp_path):
    FeatureStore(str(tmp_path / "empty.zarr"), mode="a", trunk=FAKE_TRUNK)
    result = torchrun("train-decoder", tmp_path / "empty.zarr", tmp_path / "run", "--device", "cpu", timeout=120)
    assert result.returncode != 0  # torchrun stops the other rank, if it is still running, when one exits
    assert "sal3d: error:" in result.stderr and "no complete video" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_torchrun_run_killed_mid_epoch_resumes_the_same_steps(ddp_run, sample_store, tmp_path):
    """The run of `ddp_run`, with last.pt after every step, stopped (SIGTERM to torchrun, which ends the
    ranks) during step 2 and resumed under torchrun: it redoes step 2 from the step-1 state, as the
    uninterrupted run did it."""
    import signal
    import time

    uninterrupted = _jsonl(ddp_run[0] / "steps.jsonl")
    run = tmp_path / "run"
    command, env = torchrun_command("train-decoder", sample_store, run, *SMALL_RUN, "--checkpoint-steps", 1)
    with open(tmp_path / "killed.log", "w") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 200
    try:
        while not (run / "last.pt").exists():  # written after step 1, mid-epoch
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "no mid-epoch last.pt in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert [s["step"] for s in _jsonl(run / "steps.jsonl")] == [1]
    resumed = torchrun("train-decoder", sample_store, run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 0, step 1 of epoch 1" in resumed.stderr
    assert "ranks agree: max |w_r - w_0| = 0" in resumed.stderr
    steps = _jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2]
    assert [s["loss"] for s in steps] == pytest.approx([s["loss"] for s in uninterrupted], rel=1e-5)


# ------------------------------------------------------------------------- pipeline.distributed


def test_world_size_one_initialises_nothing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")

    def refuse(*args, **kwargs):
        raise AssertionError("init_process_group called in a single process")

    monkeypatch.setattr(dist, "init_process_group", refuse)
    world = distributed.world_from_env()
    assert world == distributed.World(1, 0, 0) and not world.distributed
    assert distributed.world_from_env({}) == world
    cpu = torch.device("cpu")
    assert distributed.start(world, cpu) == cpu
    assert not dist.is_initialized() and not distributed.active()
    model = torch.nn.Linear(2, 2)
    value = torch.ones(3)
    assert distributed.wrap(model, cpu) is model and distributed.unwrap(model) is model
    assert distributed.mean(value) is value and distributed.from_main({"a": 1}) == {"a": 1}
    assert distributed.is_main() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.max_difference_from_main(model) == 0.0
    distributed.barrier()
    distributed.stop()


def test_inconsistent_environment_is_refused():
    with pytest.raises(ValueError, match="WORLD_SIZE=2, RANK=2"):
        distributed.world_from_env({"WORLD_SIZE": "2", "RANK": "2"})


def _compare_replicas(rank: int, port: int, out: str) -> None:
    """Two gloo processes with the same seeded Linear; rank 1 then nudges one weight (see the test)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    world = distributed.World(2, rank, rank)
    distributed.start(world, torch.device("cpu"))
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        same = distributed.max_difference_from_main(model)
        if rank == 1:
            with torch.no_grad():
                model[0].weight[1, 2] += 0.25
        differ = distributed.max_difference_from_main(model)
        Path(out, f"rank{rank}.json").write_text(json.dumps([same, differ]))
    finally:
        distributed.stop()


def test_replica_comparison_sees_a_diverged_rank(tmp_path):
    """The check behind "ranks agree" can fail: a replica that drifted is reported by every rank."""
    torch.multiprocessing.spawn(_compare_replicas, args=(_free_port(), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        same, differ = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert same == 0.0 and differ == pytest.approx(0.25)
