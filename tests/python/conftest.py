"""Fixtures for the Python gRPC client test: a real `raven sim` and `raven serve`.

Stubs are generated from proto/raven/v1/raven.proto at test time with grpc_tools, the
way any Python consumer of Raven would, so the test proves the published proto works.
"""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAVEN = str(Path(os.environ.get("RAVEN_BIN", ROOT / "target" / "debug" / "raven")).resolve())


def free_port() -> int:
    """A free port below Linux's ephemeral range, where outgoing connections take their
    source ports (a port-0 pick could be taken by one before the server binds it)."""
    while True:
        port = random.randint(20000, 31999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@pytest.fixture(scope="session")
def pb():
    """Generated raven.v1 modules: (raven_pb2, raven_pb2_grpc)."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="raven-stubs-")
    rc = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(ROOT / "proto" / "raven" / "v1" / "raven.proto"),
        ]
    )
    assert rc == 0, "protoc failed on raven.proto"
    sys.path.insert(0, out)
    from raven.v1 import raven_pb2, raven_pb2_grpc  # noqa: E402

    return raven_pb2, raven_pb2_grpc


def serve_env(tmp: Path) -> dict:
    """The server's environment, its data dir (SQLite history) in `tmp`: without it the
    default `data` is relative to pytest's working directory, the source tree, and an
    inherited RAVEN_DATA_DIR would beat any `data_dir` in the config file."""
    return {**os.environ, "RAVEN_DATA_DIR": str(tmp / "data")}


def start_raven(server_extra: str = ""):
    """Starts `raven sim` (synthetic spot market) and `raven serve` pointed at it, with
    `server_extra` TOML after the `[server]` keys; waits until every book is synced.
    Returns (gRPC address, [processes], temp dir); `stop(processes, tmp)` ends both."""
    tmp = Path(tempfile.mkdtemp(prefix="raven-py-"))
    sim = subprocess.Popen(
        [RAVEN, "sim", "--listen", "127.0.0.1:0", "--symbols", "3", "--rate", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = sim.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    assert m, f"sim did not start: {line!r}"
    addr = m.group(1)
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    config = tmp / "raven.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
grpc_port = {grpc_port}
health_port = {health_port}
metrics_port = {metrics_port}
heartbeat_ms = 500
{server_extra}

[[venues]]
venue = "binance_spot"
symbols = ["SYN0USDT", "SYN1USDT", "SYN2USDT"]
channels = ["trades", "book", "bbo", "candles"]
ws_url = "ws://{addr}"
rest_url = "http://{addr}"
"""
    )
    log = open(tmp / "serve.log", "w")
    serve = subprocess.Popen(
        [RAVEN, "serve", "--config", str(config)], stdout=log, stderr=log, env=serve_env(tmp)
    )
    deadline = time.time() + 60
    while True:
        # Ready needs one book in sync; the tests want all three.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health/ready", timeout=1) as r:
                books = json.load(r)["components"]["books"]["books"]
                if r.status == 200 and books and all(b["state"] == "synced" for b in books):
                    break
        except OSError:
            pass
        assert serve.poll() is None, f"raven serve exited: {(tmp / 'serve.log').read_text()}"
        assert time.time() < deadline, "raven serve did not become ready in 60 s"
        time.sleep(0.2)
    return f"127.0.0.1:{grpc_port}", [serve, sim], tmp


def stop(procs, tmp: Path | None = None):
    """Ends `procs`, then removes `tmp` (config, log, data) once nothing writes there."""
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def raven_server():
    """A Raven anyone may call, in plain text."""
    addr, procs, tmp = start_raven()
    yield addr
    stop(procs, tmp)


@pytest.fixture(scope="session")
def demo_server():
    """`raven serve --demo`: synthetic Binance spot and USD-M exchanges and a synthetic
    Bybit linear one, in-process, each on its own protocol."""
    tmp = Path(tempfile.mkdtemp(prefix="raven-py-demo-"))
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    log = open(tmp / "serve.log", "w")
    serve = subprocess.Popen(
        [
            RAVEN, "serve", "--demo", "--host", "127.0.0.1",
            "--grpc-port", str(grpc_port), "--health-port", str(health_port),
            "--metrics-port", str(metrics_port),
        ],
        stdout=log,
        stderr=log,
        cwd=tmp,
        env=serve_env(tmp),
    )
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert serve.poll() is None, f"raven serve --demo exited: {(tmp / 'serve.log').read_text()}"
        assert time.time() < deadline, "raven serve --demo did not become ready in 60 s"
        time.sleep(0.2)
    yield f"127.0.0.1:{grpc_port}"
    stop([serve], tmp)
