"""Shared fixtures: a generated DHF1K-layout sample and its feature store (real decord, real
VGG-16 trunk with seeded random weights, real Zarr), made once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from sal3d.pipeline.device import CPU_DTYPE_VARIABLE, CPU_DTYPES
from sal3d.pipeline.sample import SampleSpec, make_sample
from sal3d.pipeline.store import FeatureStore, VideoRecord
from sal3d.stages.extract import ExtractConfig, extract

# Real DHF1K data (DHF1K layout, a few videos with maps): SAL3D_SAMPLE, else the developers' copy beside the repo.
REAL_SAMPLE = Path(os.environ.get("SAL3D_SAMPLE") or
                   Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dhf1k_sample")
# The DHF1K benchmark's MATLAB metric code (AUC_Judd.m, evaluationFunc.m, ...): SAL3D_DHF1K_METRICS,
# else the workshop folder beside the checkout. Never copied into the project.
DHF1K_METRICS = Path(os.environ.get("SAL3D_DHF1K_METRICS")
                     or Path(__file__).resolve().parents[1].parent / "shared" / "dhf1k_metrics")
SAMPLE_SPEC = SampleSpec(train=2, val=1, frames=6)
BATCH = 4  # frames per trunk batch in every extraction the tests compare


SHM = Path("/dev/shm")


def mapped_shm_names() -> set[str]:
    """Names of /dev/shm files that some process maps now."""
    names = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            names.update(line.rsplit("/dev/shm/", 1)[1].strip() for line in maps.read_text().splitlines()
                         if "/dev/shm/" in line)
        except (OSError, IndexError):
            continue
    return names


def running_in_group(group: int) -> list[str] | None:
    """The processes of process group `group` that still run, as "pid command" lines; None when any
    process of it exists, where /proc cannot say. A zombie is not listed: it has ended, and only waits
    for its reaper (for a killed run's helpers, this machine's init), which may take seconds."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(group, 0)
            return None
        except ProcessLookupError:
            return []
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue  # ended while listed
        state, _parent, process_group = fields.split()[:3]
        if int(process_group) == group and state not in ("Z", "X"):
            running.append(f"{stat.parent.name} {name.split('(', 1)[1]}")
    return running


@pytest.fixture(scope="session", autouse=True)
def no_semaphores_left_by_killed_runs():
    """The kill tests SIGKILL whole process groups, multiprocessing's resource tracker included, as a
    crash would: the named semaphores (``sem.mp-*``) of the killed processes stay in /dev/shm. At the
    end of the session, those that appeared during it and that no process maps are removed."""
    before = {p.name for p in SHM.glob("sem.mp-*")} if SHM.is_dir() else set()
    yield
    if not SHM.is_dir():
        return
    mapped = mapped_shm_names()
    for path in SHM.glob("sem.mp-*"):
        if path.name not in before and path.name not in mapped:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    make_sample(directory, SAMPLE_SPEC)
    return directory


@pytest.fixture(scope="session")
def sample_store(sample_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("stores") / "sample.zarr"
    summary = extract(ExtractConfig(sample_dir, str(store), weights="random", device="cpu", batch_size=BATCH))
    assert not summary.failed, summary.failed
    return store


@pytest.fixture(params=CPU_DTYPES)
def cpu_dtype(request, monkeypatch) -> str:
    """The test once per CPU compute dtype, forced through SAL3D_CPU_DTYPE: float32 (what CPUs without
    native bf16 compute in) and bfloat16 (CPUs with it), whichever this CPU has. Subprocesses inherit it."""
    monkeypatch.setenv(CPU_DTYPE_VARIABLE, request.param)
    return request.param


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "video").is_dir():
        pytest.skip(f"real DHF1K sample absent ({REAL_SAMPLE})")
    return REAL_SAMPLE


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def assert_stores_equal(a, b) -> None:
    """Every array and attribute of every video of two feature stores, element for element (but who
    wrote each video and when: `VideoRecord.stable`)."""
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    assert ga.attrs["trunk"] == gb.attrs["trunk"]
    ids = sorted(ga["videos"].group_keys())
    assert ids == sorted(gb["videos"].group_keys())
    index_a, index_b = (FeatureStore(str(s)).index for s in (a, b))  # the index, but when each completed
    assert {v: replace(e, completed=None) for v, e in index_a.items()} == \
        {v: replace(e, completed=None) for v, e in index_b.items()}
    for video_id in ids:
        va, vb = ga["videos"][video_id], gb["videos"][video_id]
        assert VideoRecord.from_attrs(va.attrs).stable() == VideoRecord.from_attrs(vb.attrs).stable(), video_id
        assert sorted(va.array_keys()) == sorted(vb.array_keys())
        for name in va.array_keys():
            np.testing.assert_array_equal(va[name][:], vb[name][:], err_msg=f"{video_id}/{name}")


class Octave:
    """GNU Octave's ``octave-cli`` with the image package loaded; runs one script per call."""

    def __init__(self, executable: str):
        self.executable = executable

    def run(self, script: str, cwd: Path, timeout: float = 300) -> str:
        """Run `script` (Octave code; ``pkg load image`` comes first) in `cwd`; returns its stdout.

        Raises AssertionError with Octave's output when it fails."""
        path = Path(cwd) / "sal3d_script.m"
        path.write_text("pkg load image;\n" + script + "\n")
        done = subprocess.run([self.executable, "--norc", "--quiet", "--no-window-system", str(path)],
                              cwd=cwd, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"octave failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="session")
def octave() -> Octave:
    """octave-cli with the image package, or a skip that says what is missing."""
    executable = shutil.which("octave-cli")
    if executable is None:
        pytest.skip("octave-cli not found (apt-get install octave octave-image): the checks against "
                    "GNU Octave need it")
    try:
        done = subprocess.run([executable, "--norc", "--quiet", "--eval", "pkg load image"],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("octave-cli did not start within 120 s")
    if done.returncode != 0:
        pytest.skip(f"octave-cli has no image package (apt-get install octave-image): {done.stderr.strip()[:200]}")
    return Octave(executable)


@pytest.fixture(scope="session")
def dhf1k_metrics(octave) -> Path:
    """The folder of the DHF1K benchmark's .m metric code, or a skip naming where it was looked for."""
    if not (DHF1K_METRICS / "evaluationFunc.m").is_file():
        pytest.skip(f"the DHF1K benchmark's metric code is absent ({DHF1K_METRICS}/evaluationFunc.m); set "
                    "SAL3D_DHF1K_METRICS to the folder of its .m files")
    return DHF1K_METRICS
