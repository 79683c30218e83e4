"""`expdb ui` at the command line: a bad database or port stops it with one line; off loopback it needs a token."""

import re
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import refused, wait_until

pytest.importorskip("uvicorn")


def test_missing_database_is_one_line(cli, workdir):
    refused(cli, ["ui", "--db", str(workdir / "nowhere.db")], "no expdb database at")


@pytest.mark.sqlite_only
def test_newer_database_is_one_line(cli, example_db):
    with sqlite3.connect(example_db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    refused(cli, ["ui", "--db", str(example_db)], "was written by a newer expdb (schema revision 9999")


@pytest.mark.sqlite_only
def test_bad_port_is_one_line(cli, example_db):
    refused(cli, ["ui", "--db", str(example_db), "--port", "70000"], "--port 70000 is not a port")


@pytest.mark.sqlite_only
def test_a_port_in_use_or_an_empty_host_is_one_line(cli, example_db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(
            cli, ["ui", "--db", str(example_db), "--port", str(port)],
            f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port",
        )
    refused(cli, ["ui", "--db", str(example_db), "--host", ""], "--host is empty")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.sqlite_only
def test_another_address_prints_a_token_that_every_request_needs(example_db):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "expdb", "ui", "--db", str(example_db), "--host", "0.0.0.0", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline()
        token = re.search(rf"at http://0\.0\.0\.0:{port}/\?token=(\S+) \(Ctrl-C to stop\)", first).group(1)
        base = f"http://127.0.0.1:{port}"

        def status(url: str) -> int | None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
            except OSError:
                return None

        wait_until(lambda: status(base + "/api/table") is not None, "the server to listen")
        assert status(base + "/api/table") == 401
        assert status(base + "/api/table?token=" + token) == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
