"""MkDocs hooks for the documentation site (mkdocs.yml ``hooks:``).

- ``<!-- readme… -->`` (the home page) becomes README.md, its links made relative to the site,
  so the two never say different things.
- ``<!-- cli-reference -->`` in a page becomes the reference of every ``rnnkit`` command,
  generated from the argparse parser the CLI runs (rnnkit.cli.build_parser).
- Links from a page to the code, ``[`runner.step_forward`](../rnnkit/runner.py)`` (what reads
  well on GitHub), become cross-references into the API reference; a private name stays text.
  Every such name must exist, and every other link out of docs/ must name a file of the
  repository: anything else stops the build, as a broken page link does in strict mode.
"""

from __future__ import annotations

import argparse
import html
import importlib
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
CODE_LINK = re.compile(r"\[`([\w./]+)`\]\(\.\./rnnkit/(\w+)\.py\)")
REPO_LINK = re.compile(r"\[([^\]]+)\]\(\.\./([\w./-]+)\)")


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split())).replace("|", "\\|")


def _command(parser: argparse.ArgumentParser, name: str, out: list[str]) -> None:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    usage = parser.format_usage().removeprefix("usage: ").strip()
    out += [f"## {name}", ""]
    if parser.description:
        out += [html.escape(parser.description), ""]
    out += ["```", usage, "```", ""]
    rows = []
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(action.option_strings) or action.dest
        if action.option_strings and action.nargs != 0:
            metavar = formatter._get_default_metavar_for_optional(action)
            flags += " " + formatter._format_args(action, metavar)
        helptext = formatter._expand_help(action) if action.help else ""
        rows.append(f"| `{_cell(flags)}` | {_cell(helptext)} |")
    if rows:
        out += ["| option | what it does |", "|---|---|", *rows, ""]
    for sub in subs:
        for child, subparser in sub.choices.items():
            _command(subparser, f"{name} {child}", out)


def cli_reference() -> str:
    """Every command of the CLI, its usage line and its options, from the parser itself."""
    from rnnkit.cli import build_parser

    out: list[str] = []
    parser = build_parser()
    for sub in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for child, subparser in sub.choices.items():
            _command(subparser, f"rnnkit {child}", out)
    return "\n".join(out)


def _code_link(match: re.Match) -> str:
    dotted, module = match.groups()
    if "/" in dotted:  # [`rnnkit/cells.py`](../rnnkit/cells.py): the module itself
        target, obj = f"rnnkit.{module}", importlib.import_module(f"rnnkit.{module}")
    else:
        if dotted.split(".")[0] != module:
            raise PluginError(f"`{dotted}` is linked to rnnkit/{module}.py")
        obj = importlib.import_module(f"rnnkit.{module}")
        for attr in dotted.split(".")[1:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                raise PluginError(f"`{dotted}`: rnnkit.{module} has no such name")
        target = f"rnnkit.{dotted}"
    if any(part.startswith("_") for part in target.split(".")):
        return f"`{dotted}`"  # private: not in the API reference
    return f"[`{dotted}`][{target}]"


def _repo_link(match: re.Match) -> str:
    text, path = match.groups()
    if not (ROOT / path).exists():
        raise PluginError(f"link to ../{path}: no such file in the repository")
    return text if text.startswith("`") else f"{text} (`{path}`)"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Generate the CLI reference; turn links to the code into checked references."""
    if markdown.startswith("<!-- readme"):
        markdown = (ROOT / "README.md").read_text(encoding="utf-8")
        markdown = markdown.replace("](README.zh-CN.md)", "](getting-started.zh-CN.md)")
        markdown = markdown.replace("](docs/", "](")
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    markdown = CODE_LINK.sub(_code_link, markdown)
    return REPO_LINK.sub(_repo_link, markdown)
