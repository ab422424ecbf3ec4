"""The local stack's moto servers keep connections open; its Batch jobs run in the stack's session, below it."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from batch_agent.local.batch_runner import BACKGROUND_NICE, LocalBatch
from batch_agent.local.moto_server import KeepAliveMotoServer


@pytest.fixture
def server() -> Any:
    moto = KeepAliveMotoServer("127.0.0.1", 0)
    moto.start()
    yield moto
    moto.stop()


def _read_response(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return head, body[:length]


def test_one_connection_carries_many_boto3_calls(server: KeepAliveMotoServer) -> None:
    host, port = server.get_host_and_port()
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    dynamodb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
    )
    for i in range(20):
        dynamodb.put_item(TableName="t", Item={"k": {"S": str(i)}, "v": {"S": "x" * i}})
        assert dynamodb.get_item(TableName="t", Key={"k": {"S": str(i)}})["Item"]["v"]["S"] == "x" * i
    assert len(server._server.open_connections) == 1  # type: ignore[union-attr]


def test_a_body_the_application_does_not_read_is_drained_before_the_next_request(
    server: KeepAliveMotoServer,
) -> None:
    host, port = server.get_host_and_port()
    with socket.create_connection((host, port), timeout=10) as conn:
        # the dashboard page is static: it neither reads a body nor depends on moto state other tests left
        unread = b"x" * 100_000
        conn.sendall(
            b"GET /moto-api/ HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(unread) + unread
        )
        head, _ = _read_response(conn)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
        conn.sendall(b"GET /moto-api/ HTTP/1.1\r\nHost: h\r\n\r\n")
        head, body = _read_response(conn)
        assert head.startswith(b"HTTP/1.1 200") and b"<!DOCTYPE" in body[:100]


def test_a_client_that_asks_to_close_gets_its_connection_closed(server: KeepAliveMotoServer) -> None:
    host, port = server.get_host_and_port()
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"GET /moto-api/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        _read_response(conn)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and conn.recv(65536):
            pass
        assert conn.recv(65536) == b""


def test_stop_closes_idle_connections(server: KeepAliveMotoServer) -> None:
    host, port = server.get_host_and_port()
    conn = socket.create_connection((host, port), timeout=10)
    conn.sendall(b"GET /moto-api/ HTTP/1.1\r\nHost: h\r\n\r\n")
    _read_response(conn)
    server.stop()
    assert conn.recv(65536) == b""
    conn.close()
    server.start()  # the fixture stops it again


class _Job(SimpleNamespace):
    def _start_attempt(self) -> None:
        pass

    def _mark_stopped(self, success: bool) -> None:
        self.success = success


def test_a_batch_job_runs_in_the_stacks_session_in_its_own_group_below_the_stack(tmp_path: Path) -> None:
    out = tmp_path / "ids.txt"
    ids = "{os.getsid(0)} {os.getpgrp()} {os.getpid()} {os.nice(0)}"
    probe = f"import os; open({str(out)!r}, 'w').write(f'{ids}')"
    job = _Job(
        job_id="j1", job_name="probe", timeout=None, parameters={}, container_overrides={},
        job_definition=SimpleNamespace(container_properties={"command": [sys.executable, "-c", probe]},
                                       parameters={}, timeout=None),
    )
    batch = LocalBatch(lambda env: {**os.environ, **env}, tmp_path, capacity=1, cwd=tmp_path)
    batch._run(job)
    assert job.success and job.exit_code == 0
    session, group, pid, nice = (int(v) for v in out.read_text().split())
    # Linux's autogroup shares the CPU by session first: a job in a session of its own would
    # get as much as the API whatever its nice value.
    assert session == os.getsid(0)
    assert group == pid  # its own process group: a terminate kills the whole tree
    assert nice == min(19, os.nice(0) + BACKGROUND_NICE)
