"""The README and docs/ stay true to the code: every snnc command they show parses with the CLI's
own parser, every Python block is valid Python, every relative link names a file that exists."""
import re
import shlex
from pathlib import Path

import pytest

from snn_compiler.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(page, lang):
    return [body for kind, body in FENCE.findall(page.read_text()) if kind == lang]


def snnc_lines(page):
    for body in blocks(page, "bash"):
        for line in body.splitlines():
            line = line.split(" #")[0].strip()
            for prefix in (".venv/bin/snnc ", "snnc "):
                if line.startswith(prefix):
                    yield shlex.split(line[len(prefix):])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_snnc_command_shown_parses(page):
    parser = build_parser()
    for argv in snnc_lines(page):
        try:
            parser.parse_args(argv)
        except SystemExit as e:  # --version and --help exit 0 once they have printed
            if e.code == 0:
                continue
            raise AssertionError(f"{page.name}: `snnc {' '.join(argv)}` does not parse") from e


def test_the_readme_shows_the_main_commands():
    shown = {argv[0] for argv in snnc_lines(ROOT / "README.md")}
    assert {"compile", "inspect", "simulate", "check", "report"} <= shown


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_are_valid_python(page):
    for i, body in enumerate(blocks(page, "python")):
        compile(body, f"{page.name} block {i}", "exec")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_name_existing_files(page):
    for target in re.findall(r"\]\((?!https?:|#)([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_every_positional_argument_and_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, cmd in sub.choices.items():
        assert cmd.description or name in {a.dest for a in sub._choices_actions if a.help}, name
        for a in cmd._actions:
            if not a.option_strings and a.dest != "help":
                assert a.help, f"snnc {name}: positional {a.dest!r} has no help"
    compile_help = next(a for a in sub.choices["compile"]._actions if a.dest == "model").help
    assert all(f in compile_help for f in (".pt2", ".onnx", ".h5", ".nir"))
