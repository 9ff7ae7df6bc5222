"""The stand-in Lambda's socket delivers small writes in the segments a real network would: the
first at once, the writes made while it is unacknowledged together one round trip later. Measured
by a real TCP server on loopback (what the seed's shared_port daemon sees)."""
from __future__ import annotations

import socket
import struct
import threading
import time

from condor_seed.local.internet_path import AcrossTheInternet

ROUND_TRIP = 0.3  # long enough that the server has read the first segment before the rest arrives


def _arrivals(client_class) -> list[tuple[float, bytes]]:
    """Send check-connectivity.py's three writes (header, length, DC_QUERY_INSTANCE); what the
    server's reads returned, with when."""
    server = socket.create_server(("127.0.0.1", 0))
    chunks: list[tuple[float, bytes]] = []

    def serve():
        conn, _ = server.accept()
        with conn:
            while sum(len(c) for _, c in chunks) < 13:
                data = conn.recv(64)
                if not data:
                    break
                chunks.append((time.monotonic(), data))
            conn.sendall(b"\x01\x00\x00\x00\x00")

    thread = threading.Thread(target=serve)
    thread.start()
    client = client_class(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(server.getsockname())
    start = time.monotonic()
    for piece in (struct.pack("!B", 1), struct.pack("!I", 8), struct.pack("!Q", 60045)):
        client.send(piece)
    assert client.recv(5) == b"\x01\x00\x00\x00\x00"
    client.close()
    thread.join(10)
    server.close()
    return [(at - start, data) for at, data in chunks]


def test_small_writes_arrive_as_over_a_real_network(monkeypatch):
    monkeypatch.setattr(AcrossTheInternet, "round_trip", ROUND_TRIP)
    arrivals = _arrivals(AcrossTheInternet)
    assert [data for _, data in arrivals] == [b"\x01", struct.pack("!IQ", 8, 60045)]
    assert arrivals[1][0] - arrivals[0][0] >= ROUND_TRIP * 0.9  # held for the first segment's round trip


def test_writes_after_the_round_trip_leave_at_once(monkeypatch):
    monkeypatch.setattr(AcrossTheInternet, "round_trip", 0.0)
    arrivals = _arrivals(AcrossTheInternet)
    assert b"".join(data for _, data in arrivals) == b"\x01" + struct.pack("!IQ", 8, 60045)
