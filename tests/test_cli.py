"""The command line as documented: every command's --help, and `sal3d --help` without torch; every option
of every command appears in the README's synopsis of that command (and the synopses name no option that
does not exist), --version, --device."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sal3d.cli import main
from sal3d.pipeline.lifetime import Terminated

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_synopses() -> dict[str, set[str]]:
    """{command: the --options its synopsis lines in README code blocks name}; a synopsis is a line
    ``sal3d COMMAND ...`` in a fenced block plus the indented ``[...`` lines that continue it."""
    options: dict[str, set[str]] = {}
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README.read_text(), re.S | re.M)
    for block in blocks:
        command = None
        for line in block.splitlines():
            start = re.match(r"sal3d ([a-z-]+)\b", line)
            if start:
                command = start.group(1)
            elif not re.match(r"\s+\[", line):
                command = None
            if command:
                names = re.findall(r"--[a-z][a-z0-9-]*(?:/--[a-z][a-z0-9-]*)?", line)
                options.setdefault(command, set()).update(names)
    return options


def click_options(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            long = [o for o in param.opts if o.startswith("--")]
            if param.secondary_opts:
                names.add(f"{long[0]}/{param.secondary_opts[0]}")
            else:
                names.update(long)
    return names


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help(name):
    command = main.commands[name]
    result = CliRunner().invoke(main, [name, "--help"], prog_name="sal3d")
    assert result.exit_code == 0, result.output + repr(result.exception)
    usage = result.output.splitlines()[0]
    assert usage.startswith(f"Usage: sal3d {name} [OPTIONS]"), usage
    for param in command.params:
        if isinstance(param, click.Argument):
            assert param.make_metavar(click.Context(command)) in usage, (name, param.name, usage)
    for option in click_options(command):
        for flag in option.split("/"):  # --rescale/--no-rescale shows as "--rescale / --no-rescale"
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result.output), (name, flag)


def test_group_help_lists_every_command_without_importing_torch():
    script = ("import sys\nfrom sal3d.cli import main\n"
              "try:\n    main(['--help'], prog_name='sal3d')\nexcept SystemExit as end:\n    code = end.code\n"
              "print('torch imported:', 'torch' in sys.modules, 'exit:', code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: sal3d [OPTIONS] COMMAND")
    for name in main.commands:
        assert f"  {name} " in done.stdout, name
    assert done.stdout.rstrip().endswith("torch imported: False exit: 0")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_readme_synopsis_lists_every_option(name):
    documented = readme_synopses().get(name)
    assert documented is not None, f"README has no synopsis for sal3d {name}"
    actual = click_options(main.commands[name])
    assert actual - documented == set(), f"sal3d {name}: options missing from the README synopsis"
    assert documented - actual == set(), f"sal3d {name}: the README names options that do not exist"


def test_version_and_device_choices():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and re.match(r"sal3d, version \d", result.output)
    bad = CliRunner().invoke(main, ["train-decoder", "s.zarr", "run", "--device", "gpu"])
    assert bad.exit_code == 2 and "cuda:N" in bad.output


def test_cuda_index_is_accepted_where_cuda_exists_and_refused_clearly_where_not(sample_dir, tmp_path):
    import torch

    from sal3d.pipeline.device import DeviceError, resolve_device

    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(DeviceError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(DeviceError, match="--device cuda:0 was asked for but torch sees no CUDA device"):
            resolve_device("cuda:0")
        result = CliRunner().invoke(main, ["extract", str(sample_dir), str(tmp_path / "s.zarr"), "--weights", "random",
                                           "--device", "cuda:0"])
        assert result.exit_code == 2
        assert "sal3d: error: --device cuda:0 was asked for but torch sees no CUDA device" in result.output
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("stop, status, said", [(KeyboardInterrupt, 130, "interrupted"),
                                                (Terminated, 143, "stopped by SIGTERM")])
def test_ctrl_c_and_sigterm_in_any_command_are_one_line_and_the_shells_status(tmp_path, monkeypatch, stop, status,
                                                                                said):
    import sal3d.stages.verify

    def interrupted(config):
        raise stop

    monkeypatch.setattr(sal3d.stages.verify, "verify", interrupted)
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "s.zarr")])
    assert result.exit_code == status, result.output
    assert f"sal3d verify: {said}" in result.output and "Aborted!" not in result.output


def test_sigterm_reaches_a_command_as_an_interrupt(tmp_path, monkeypatch):
    import os
    import signal

    import sal3d.stages.verify

    def terminated(config):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises in this (the main) thread
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(sal3d.stages.verify, "verify", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "s.zarr")])
    assert result.exit_code == 143, result.output
    assert "stopped by SIGTERM" in result.output
    assert signal.getsignal(signal.SIGTERM) is before  # the command's handler is gone with it
