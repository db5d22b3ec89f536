"""``wsmux record``, ``wsmux demo --record``, ``wsmux replay``; and what listens where.

Every server wsmux starts binds 127.0.0.1 unless an option says otherwise,
and the help of the commands that start one says so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest
from websockets.sync.client import connect

from wsmux.__main__ import main
from wsmux._recfile import read_recording, served_frames
from wsmux.testing import ConnectProxy, FeedServer

CLI = [sys.executable, "-m", "wsmux"]


def listening_hosts(pid: int, port: int) -> set[str]:
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_record_writes_the_filtered_frames(tmp_path: Path) -> None:
    out = tmp_path / "feed.jsonl.zst"
    with FeedServer(symbols=2) as srv:
        srv.start_feed(rate=500)
        argv = ["record", f"{srv.url}/ws", "-o", str(out), "--duration", "0.5", "-f", "s=SYM1"]
        assert main(argv) == 0
    header, entries = read_recording(out)
    assert header["url"] == srv.url and header["name"] == f"{srv.url}/ws"
    frames = [orjson.loads(data) for _, data, _ in served_frames(entries)]
    assert frames and {m["s"] for m in frames} == {"SYM1"}
    assert entries[0]["ev"] == "connect" and entries[-1]["ev"] == "close"


def test_record_reports_a_bad_target_and_a_refused_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FeedServer() as srv:
        srv.refuse(None, 403)
        assert main(["record", f"{srv.url}/ws", "-o", str(tmp_path / "x.jsonl")]) == 1
    assert "HTTP 403" in capsys.readouterr().err
    missing = tmp_path / "no" / "such" / "dir.jsonl"
    assert main(["record", "ws://127.0.0.1:1/ws", "-o", str(missing)]) == 1
    assert "error:" in capsys.readouterr().err


def test_demo_records_itself_and_replay_serves_it_on_loopback(tmp_path: Path) -> None:
    rec = tmp_path / "demo.jsonl"
    assert main(["demo", "--seconds", "1", "--rate", "500", "--record", str(rec)]) == 0
    _, entries = read_recording(rec)
    expected = [data for _, data, _ in served_frames(entries)]
    assert len(expected) >= 200
    proc = subprocess.Popen(
        [*CLI, "replay", str(rec), "--speed", "max"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/", first)[1])  # type: ignore[index]
        assert listening_hosts(proc.pid, port) == {"127.0.0.1"}
        with connect(f"ws://127.0.0.1:{port}/ws", proxy=None, open_timeout=10) as ws:
            got = [ws.recv(timeout=10, decode=False) for _ in expected]
        assert got == expected
        assert proc.wait(20) == 0
        assert f"done: {len(expected)} frame(s) served" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_every_server_we_start_listens_on_loopback_only(tmp_path: Path) -> None:
    rec = tmp_path / "r.jsonl"
    rec.write_bytes(b'{"wsmux": "recording", "version": 1}\n')
    from wsmux import Multiplexer
    from wsmux.metrics import serve_metrics

    with (
        FeedServer() as feed,
        FeedServer.replay(rec) as replay,
        ConnectProxy() as proxy,
        serve_metrics(Multiplexer("ws://127.0.0.1:1/ws")) as metrics,
    ):
        for server in (feed, replay, proxy, metrics):
            assert listening_hosts(psutil.Process().pid, server.port) == {"127.0.0.1"}


@pytest.mark.parametrize("command", ["demo", "replay", "tap"])
def test_the_help_of_commands_that_listen_says_where(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "127.0.0.1" in text
    if command == "replay":
        assert "--host" in text and "default 127.0.0.1" in text
    else:  # the metrics endpoint
        assert "--metrics-host" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["record", "ws://127.0.0.1:1"],  # no -o
        ["record", "http://x", "-o", "f"],
        ["record", "ws://127.0.0.1:1", "-o", "f", "--duration", "0"],
        ["replay", "f", "--speed", "-1"],
        ["replay", "f", "--port", "x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_replay_of_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "none.jsonl")]) == 1
    assert "error:" in capsys.readouterr().err


def test_record_through_a_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.jsonl"
    with FeedServer() as srv, ConnectProxy(auth=("u", "pr0xy-pw")) as proxy:
        srv.start_feed(rate=200)
        argv = ["record", f"{srv.url}/ws", "-o", str(out), "--duration", "0.3"]
        assert main([*argv, "--proxy", proxy.url_with("u", "pr0xy-pw")]) == 0
        assert [r.status for r in proxy.requests] == [200]
        assert main([*argv, "--proxy", proxy.url_with("u", "wrong-pw")]) == 1
        assert main([*argv, "--proxy", "ftp://u:pr0xy-pw@127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 407" in err and "invalid proxy" in err
    assert "pr0xy-pw" not in err and "wrong-pw" not in err
