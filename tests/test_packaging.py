"""The distribution: an sdist and a wheel built from the project's files install one import name,
`sal3d`, holding every subpackage of the checkout and the split manifests, and the installed wheel
runs (`python -m sal3d`, the manifests read through importlib.resources).

The builds call setuptools' PEP 517 backend in this environment (no build isolation, nothing
downloaded), on a copy of the checkout, so that no build/ or egg-info lands in the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Never part of a distribution: what a checkout holds besides the package's sources.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     "demo", "*.zarr", ".whl")


def build(kind: str, source: Path, out: Path) -> Path:
    """Run setuptools' build_<kind> ("sdist" or "wheel") in `source`; the file it wrote in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    script = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", script], cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / done.stdout.strip().splitlines()[-1]


def checkout_packages() -> set[str]:
    """Every package of the checkout, as installed names: the root and each folder with an __init__.py
    outside tests/ and benchmarks/."""
    found = {"sal3d"}
    for init in ROOT.rglob("__init__.py"):
        folder = init.parent.relative_to(ROOT)
        if folder.parts and folder.parts[0] not in ("tests", "benchmarks", ".venv", "build") \
                and not any(p.startswith(".") for p in folder.parts):
            found.add(".".join(("sal3d", *folder.parts)))
    return found


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> dict[str, Path]:
    """An sdist and a wheel built from a copy of the checkout, and a second wheel built from the
    unpacked sdist (what pip does with an sdist)."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "checkout"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES, symlinks=True)
    sdist = build("sdist", source, work / "out")
    wheel = build("wheel", source, work / "out")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    from_sdist = build("wheel", unpacked, work / "from-sdist")
    return {"sdist": sdist, "wheel": wheel, "wheel_from_sdist": from_sdist}


@pytest.mark.parametrize("name", ["wheel", "wheel_from_sdist"])
def test_the_wheel_installs_only_sal3d_with_every_subpackage_and_the_manifests(distributions, name):
    with zipfile.ZipFile(distributions[name]) as wheel:
        files = wheel.namelist()
    top_level = {f.split("/")[0] for f in files if not f.split("/")[0].endswith(".dist-info")}
    assert top_level == {"sal3d"}
    packages = {f.rsplit("/", 1)[0].replace("/", ".") for f in files if f.endswith("/__init__.py")}
    assert packages == checkout_packages()  # a wheel once silently lacked stages.bench
    manifests = {p.name for p in (ROOT / "data_manifests").glob("*.csv")}
    assert manifests and {f"sal3d/data_manifests/{m}" for m in manifests} <= set(files)
    modules = {f for f in files if f.endswith(".py")}
    sources = {"sal3d/" + p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
               if p.relative_to(ROOT).parts[0] not in ("tests", "benchmarks", ".venv", "build")
               and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)}
    assert modules == sources
    entry_points = next(f for f in files if f.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(distributions[name]) as wheel:
        assert "sal3d = sal3d.cli:main" in wheel.read(entry_points).decode()


def test_the_installed_wheel_runs_from_anywhere(distributions, tmp_path):
    """The wheel unpacked into a folder of its own and put first on the path: `python -m sal3d` and
    the manifests come from it, not from the checkout."""
    site = tmp_path / "site"
    with zipfile.ZipFile(distributions["wheel"]) as wheel:
        wheel.extractall(site)
    script = ("import sal3d, sal3d.stages.bench, sal3d.stages.train\n"
              "from sal3d.pipeline.datasets import official_manifest\n"
              "print(sal3d.__file__)\n"
              "print(len(official_manifest('dhf1k')))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    location, count = done.stdout.split()
    assert Path(location).is_relative_to(site)
    assert int(count) == 1000  # DHF1K's 1000 videos: 600 train, 100 val, 300 test
    usage = subprocess.run([sys.executable, "-m", "sal3d", "--help"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 0 and usage.stdout.startswith("Usage: sal3d ") and "train-decoder" in usage.stdout
