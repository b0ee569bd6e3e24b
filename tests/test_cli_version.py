"""`rfmfast --version` and a description for every command."""

import argparse
import subprocess
import sys

import rfmfast
from rfmfast.cli import build_parser, main


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rfmfast {rfmfast.__version__}"


def test_version_from_the_command_line():
    r = subprocess.run(
        [sys.executable, "-m", "rfmfast.cli", "--version"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"rfmfast {rfmfast.__version__}"


def test_every_command_has_a_description_and_help():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert {"demo", "info", "complete", "bench"} <= set(sub.choices)
    for name, command in sub.choices.items():
        assert command.description and command.description.strip(), f"{name}: no description"
        assert helps.get(name), f"{name}: no help line"
        assert "\n\n" not in command.description.strip(), name  # one paragraph
