"""The documentation tells the truth about the code: every function docs/bptt*.md links exists,
every ``rnnkit`` command in the READMEs' and the site's code blocks exists and accepts the flags
shown, every Python block of the README and of every page runs, so does every command of the
README's task-family blocks, the READMEs stay short, the site builds in strict mode, and every
public function and class has a docstring."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import rnnkit
from rnnkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
PAGES = sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("_"))
BPTT = [ROOT / "docs" / "bptt.md", ROOT / "docs" / "bptt.zh-CN.md"]


def code_blocks(path: Path, lang: str | None = None) -> list[str]:
    blocks = re.findall(r"```(\w*)\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return [body for kind, body in blocks if lang is None or kind == lang]


def resolve(dotted: str):
    """``runner.step_forward`` → the object in rnnkit.runner."""
    module, *attrs = dotted.split(".")
    obj = importlib.import_module(f"rnnkit.{module}")
    for a in attrs:
        obj = getattr(obj, a)
    return obj


@pytest.mark.parametrize("doc", BPTT, ids=lambda p: p.name)
def test_bptt_links_name_real_functions(doc):
    links = re.findall(r"\[`([\w.]+)`\]\(\.\./rnnkit/(\w+)\.py\)", doc.read_text("utf-8"))
    assert len(links) >= 20, "the derivation should link the code it describes"
    for dotted, module in links:
        assert dotted.split(".")[0] == module, f"{dotted} linked to {module}.py"
        assert callable(resolve(dotted)) or inspect.isclass(resolve(dotted)), dotted
    for path in re.findall(r"\]\(\.\./(rnnkit/[\w/]+\.py)\)", doc.read_text("utf-8")):
        assert (ROOT / path).is_file(), path


def command_lines(path: Path) -> list[str]:
    """``rnnkit …`` invocations in the code blocks (``$ `` prompts and pipes allowed)."""
    found = []
    for block in code_blocks(path):
        for line in block.replace("\\\n", " ").splitlines():  # continued lines joined
            line = line.split("  #")[0].strip()
            line = line.removeprefix("$ ")
            if "| rnnkit " in line:
                line = "rnnkit " + line.split("| rnnkit ", 1)[1]
            if line.startswith("rnnkit "):
                found.append(line)
    return found


def normalise(line: str) -> list[str]:
    """A synopsis line → one concrete argv: optional parts [..] kept, the first of a|b|c."""
    line = line.replace("[", " ").replace("]", " ").replace("FILE | -", "FILE")
    argv = []
    for word in shlex.split(line)[1:]:
        if "|" in word and not word.startswith(("'", '"')) and " " not in word:
            word = word.split("|")[0]
        argv.append(PLACEHOLDERS.get(word, word))
    return argv


#: metavariables of synopsis lines → a value of the type the option takes
PLACEHOLDERS = {"N": "3", "X": "0.5", "K": "5", "S": "1", "M": "1", "TEXT": "text",
                "FILE": "file.txt", "DIR": "run", "PNG": "out.png"}


@pytest.mark.parametrize("page", READMES + PAGES, ids=lambda p: p.name)
def test_commands_exist_with_their_flags(page):
    lines = command_lines(page)
    if page in READMES:
        assert len(lines) >= 8, lines
    parser = build_parser()
    for line in lines:
        try:
            parser.parse_args(normalise(line))
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"{page.name}: `{line}` is not accepted by the CLI (exit {exc.code})")


PYTHON_PAGES = [READMES[0]] + [p for p in PAGES if code_blocks(p, "python")]


@pytest.fixture(scope="module")
def block_runs(tmp_path_factory):
    """Every ```python block of the README and the pages, each in a fresh interpreter in its
    own directory, two at a time (they are independent; the machine has two cores)."""

    def run(job):
        page, k, body = job
        where = tmp_path_factory.mktemp(f"{page.stem}-{k}")
        (where / "block.py").write_text(body, encoding="utf-8")
        return (page.name, k), subprocess.run([sys.executable, "block.py"], cwd=where,
                                               capture_output=True, text=True, timeout=600)

    jobs = [(page, k, body) for page in PYTHON_PAGES
            for k, body in enumerate(code_blocks(page, "python"))]
    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, jobs))


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, block_runs):
    """Each ```python block runs as shown (the README's three, one per task family, and every
    page's)."""
    blocks = code_blocks(page, "python")
    if page == READMES[0]:
        assert len(blocks) >= 3
    for k, body in enumerate(blocks):
        done = block_runs[page.name, k]
        assert done.returncode == 0, f"{page.name} python block {k}:\n{body}\n{done.stderr}"


def test_readme_command_blocks_run(tmp_path):
    """Every command of the README's task-family blocks runs, on the files of a quick demo
    (smaller data than the full demo the outputs shown came from, so only success is checked:
    exit status 0 and something printed)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def sh(line):
        return subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    done = sh("rnnkit demo --quick --families classify,tag,translate,lm")
    assert done.returncode == 0, done.stderr
    lines = [line for block in code_blocks(READMES[0], "bash")[1:] for line in block.splitlines()
             if line.strip()]
    assert len(lines) >= 8, lines
    for line in lines:
        done = sh(line)
        assert done.returncode == 0 and done.stdout.strip(), f"`{line}`:\n{done.stderr}"


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_readmes_stay_short(readme):
    """The README is a door, not the house: what does not fit goes to the site."""
    lines = readme.read_text("utf-8").count("\n")
    assert lines <= 250, f"{readme.name}: {lines} lines"


def test_the_site_builds_in_strict_mode(tmp_path):
    """mkdocs build --strict: a broken link, a missing page or an unknown reference fails."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
    cli = (tmp_path / "site" / "cli" / "index.html").read_text("utf-8")
    for flag in ("--tgt-tokenizer", "--beam-size", "--max-batch"):  # generated, not typed
        assert flag in cli, flag


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for info in pkgutil.iter_modules(rnnkit.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"rnnkit.{info.name}")
        if not module.__doc__:
            missing.append(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{info.name}.{name}")
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    func = getattr(member, "__func__", member)
                    if (not attr.startswith("_") and inspect.isfunction(func)
                            and not inspect.getdoc(getattr(obj, attr))):
                        missing.append(f"{info.name}.{name}.{attr}")
    assert not missing, missing


def test_the_chinese_readme_is_in_step():
    """README.zh-CN.md shows the same commands, code and outputs as README.md, in order."""
    assert code_blocks(READMES[1]) == code_blocks(READMES[0])
    en, zh = (p.read_text("utf-8") for p in READMES)
    for figure in re.findall(r"\]\((docs/img/[\w.-]+)\)", en):
        assert figure in zh and (ROOT / figure).is_file(), figure
