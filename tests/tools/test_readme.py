"""The documentation runs as written: README.md and docs/*.md.

How the Python blocks are run (a doc writer's rules):

* Every fenced block tagged ``python`` (or ``py``) is a script: it is written
  to a file and run in a subprocess, with this work tree first on
  ``PYTHONPATH``; it must exit 0 within ``TIMEOUT`` seconds, with no traceback.
  A script must end by itself (read a few messages, then leave).
* Every occurrence of ``wss://stream.binance.com:9443`` is replaced with the
  URL of a local FeedServer (``ws://127.0.0.1:PORT``) that plays BTCUSDT and
  ETHUSDT trades and depth diffs (``require_subscribe=True``: a connection
  gets the topics it subscribed to, ``btcusdt@trade`` and so on). Scripts that
  start their own FeedServer need no URL.
* A script that calls ``anyio.run(main)`` runs a second time with
  ``backend="trio"``.
* A block preceded by an HTML comment ``<!-- not run: why -->`` is a fragment
  and is skipped. At least ``MIN_RUNNABLE`` blocks must run, so this test
  cannot pass by finding none.

Every ``wsmux`` command line in a ``bash`` block parses (its options exist);
the documented ``tap`` line runs against the FeedServer and prints what it says.
The API reference page must name every public name, and the README's links
to files of the repository must resolve.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import wsmux
import wsmux.bench._run
import wsmux.cli._bridge
import wsmux.cli._demo
import wsmux.cli._record
import wsmux.cli._replay
import wsmux.cli._tap
from wsmux.__main__ import main
from wsmux.testing import FeedServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REAL_URL = "wss://stream.binance.com:9443"
TIMEOUT = 60
MIN_RUNNABLE = 9

_FENCE = re.compile(r"^(\s*)```(\w*)")
_NOT_RUN = re.compile(r"^<!--\s*not run\b")


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    run: bool

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    """The ``python`` blocks of a page, in order, each marked run or not."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    previous = ""  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, lang = fence.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if lang in ("python", "py"):
            body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
            run = _NOT_RUN.match(previous) is None
            blocks.append(Block(page, i + 1, "\n".join(body) + "\n", run))
        previous = ""
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]
RUNNABLE = [block for block in BLOCKS if block.run]
CASES = [
    pytest.param(block, backend, id=f"{block.id}-{backend}")
    for block in RUNNABLE
    for backend in ("asyncio", "trio")
    if backend == "asyncio" or "anyio.run(main)" in block.code
]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(symbols=["BTCUSDT", "ETHUSDT"], require_subscribe=True) as srv:
        srv.start_feed(rate=2000)
        yield srv


def test_blocks_are_found() -> None:
    assert len(RUNNABLE) >= MIN_RUNNABLE, [b.id for b in RUNNABLE]
    assert any(b.page.name == "README.md" for b in RUNNABLE)
    for block in BLOCKS:
        assert block.code.strip(), f"{block.id}: empty block"


def test_fragments_say_why() -> None:
    """A skipped block is marked ``<!-- not run: reason -->``, nothing vaguer."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for marker in re.findall(r"<!--\s*not run\b[^>]*-->", text):
            assert re.match(r"<!--\s*not run:\s*\S", marker), f"{page.name}: {marker}"


@pytest.mark.slow
@pytest.mark.parametrize(("block", "backend"), CASES)
def test_block_runs(block: Block, backend: str, server: FeedServer, tmp_path: Path) -> None:
    code = block.code.replace(REAL_URL, server.url)
    if backend == "trio":
        code = code.replace("anyio.run(main)", 'anyio.run(main, backend="trio")')
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, f"{block.id} ({backend}):\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def command_lines() -> list[tuple[str, list[str]]]:
    """The ``wsmux ...`` commands of every ``bash`` block, as argument lists."""
    found: list[tuple[str, list[str]]] = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        inside = False
        text = ""
        for line in lines:
            fence = _FENCE.match(line)
            if fence is not None:
                inside = not inside and fence.group(2) == "bash"
                continue
            if not inside:
                continue
            text += line.rstrip().removesuffix("\\") + (
                " " if line.rstrip().endswith("\\") else "\n"
            )
        for command in text.splitlines():
            words = shlex.split(command.replace(":PORT", ":1"), comments=True)  # a placeholder
            while "&&" in words:
                words = words[words.index("&&") + 1 :]
            if words[:1] == ["wsmux"]:
                found.append((page.name, words[1:]))
    return found


def test_command_lines_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def fake(name: str) -> Any:
        return lambda args: ran.append(name) or 0

    monkeypatch.setattr(wsmux.cli._tap, "_tap", fake("tap"))
    monkeypatch.setattr(wsmux.cli._demo, "_demo", fake("demo"))
    monkeypatch.setattr(wsmux.bench._run, "_main", fake("bench"))
    monkeypatch.setattr(wsmux.cli._record, "_record", fake("record"))
    monkeypatch.setattr(wsmux.cli._replay, "_replay", fake("replay"))
    monkeypatch.setattr(wsmux.cli._bridge, "_bridge", fake("bridge"))
    commands = command_lines()
    assert {argv[0] for _, argv in commands} >= {"tap", "demo", "bench"}, commands
    for page, argv in commands:
        assert main(argv) == 0, (page, argv)
    assert len(ran) == len(commands)


def test_documented_tap_runs(capsys: pytest.CaptureFixture[str]) -> None:
    tapped = 0
    with FeedServer(symbols=["BTCUSDT"], require_subscribe=True) as srv:
        srv.start_feed(rate=1000)
        for _, argv in command_lines():
            if argv[0] == "tap" and REAL_URL in argv[1]:
                argv = [argv[0], argv[1].replace(REAL_URL, srv.url), *argv[2:]]
                assert main(argv) == 0, argv
                out = capsys.readouterr().out.splitlines()
                count = int(argv[argv.index("--count") + 1])
                assert len(out) == count, out
                tapped += 1
    assert tapped >= 1


def test_reference_covers_the_public_names() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: ([\w.]+)$", reference, re.MULTILINE))
    wanted = {f"wsmux.{name}" for name in wsmux.__all__}
    wanted |= {"wsmux.testing.FeedServer", "wsmux.compat.AsyncWebsocketStreamInterface"}
    assert wanted <= documented, sorted(wanted - documented)


def test_reference_anchors_exist() -> None:
    """``reference.md#wsmux.X`` links (readable on GitHub too) name a documented object.

    MkDocs does not check these anchors (mkdocstrings makes them), so this does.
    """
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: ([\w.]+)$", reference, re.MULTILINE))
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for anchor in re.findall(r"\]\((?:docs/)?(?:reference\.md)?#(wsmux[\w.]*)\)", text):
            owner = next((d for d in documented if anchor == d or anchor.startswith(d + ".")), None)
            assert owner is not None, f"{page.name}: #{anchor} is not in the API reference"
            obj = importlib.import_module(owner.rsplit(".", 1)[0])
            for part in anchor.split(".")[owner.count(".") :]:
                assert hasattr(obj, part), f"{page.name}: #{anchor} names nothing"
                obj = getattr(obj, part)


def test_readme_links_resolve() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_no_references_to_unseen_documents() -> None:
    """Users cannot see the design seeds: the docs name things by their own names."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\bseeds?\s+\d{3}\b", text, re.IGNORECASE), page.name
