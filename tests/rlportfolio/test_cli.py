"""The ``rlportfolio`` console command: every subcommand answers --help under its console name, exit codes follow
core.cli's convention, and the installed script is the same command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlportfolio.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("data", "train", "sweep", "submit", "report", "serve", "deploy", "experiments", "bench"):
        assert f"  {name} " in out


@pytest.mark.parametrize("name", [n for n in SUBCOMMANDS if n != "bench"])
def test_each_subcommand_answers_help_under_its_console_name(name, capsys):
    assert main([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: rlportfolio {name}")


def test_the_modules_keep_their_python_m_names_outside_the_console(capsys):
    from training.train import main as train_main

    with pytest.raises(SystemExit) as done:
        train_main(["--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: python -m training.train")


def test_exit_codes_are_the_modules_own(tmp_path, capsys):
    assert main(["bogus"]) == 2 and "unknown command 'bogus'" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["data", "validate", str(tmp_path / "missing.csv")]) == 1  # a data error
    assert "missing.csv" in capsys.readouterr().err
    assert main(["train", "--algo", "a2c"]) == 2  # a configuration error
    assert "a2c" in capsys.readouterr().err
    assert main(["train"]) == 2  # argparse: --algo is required


def test_bench_runs_a_benchmark_by_name_and_names_unknown_ones(capsys):
    assert main(["bench", "nope"]) == 2 and "ab_validity" in capsys.readouterr().err
    assert main(["bench", "ab_validity", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: ab_validity.py")  # the script's own options


def test_the_installed_script_is_the_same_command(tmp_path):
    script = Path(sys.executable).parent / "rlportfolio"
    done = subprocess.run(
        [str(script), "data", "synth", "--out", str(tmp_path / "m.csv"), "--years", "2"],
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.csv").is_file() and (tmp_path / "m.params.json").is_file()
