"""The internet between AWS Lambda and an instance's public IP, as a TCP sender meets it.

The emulated network has no distance: the host reaches the instance's namespace in microseconds.
A real path has a round trip, and a sender's TCP (Nagle's algorithm, on by default) sends a small
write at once but holds the writes that follow until that segment is acknowledged, one round trip
later, and then sends them together. HTCondor's connectivity-check Lambda (check-connectivity.py)
writes its CEDAR message in three pieces (header byte, length, command), so on AWS the seed sees
the lone header byte first and the rest a round trip later. What the seed does with the command
depends on that (see `ConnectivityCheck` in cloud.py), so the stand-in Lambda sends through
`AcrossTheInternet`, which reproduces those segments, instead of a zero-distance socket that
delivers all 13 bytes at once.
"""
from __future__ import annotations

import socket
import time

# Lambda to an EC2 public IP in the same region: about 1-2 ms; across regions, tens.
ROUND_TRIP_S = 0.002


class AcrossTheInternet(socket.socket):
    """A TCP client socket whose small writes reach the peer in the segments Nagle's algorithm
    makes over a path with a round trip of ROUND_TRIP_S (writes shorter than a segment only)."""

    round_trip = ROUND_TRIP_S

    def connect(self, address) -> None:
        super().connect(address)
        # we decide when segments leave; the kernel must not coalesce on its own
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in_flight_until = 0.0
        self._held = b""

    def send(self, data, flags: int = 0) -> int:
        if not self._held and time.monotonic() >= self._in_flight_until:
            sent = super().send(data, flags)  # nothing unacknowledged: leaves at once
            self._in_flight_until = time.monotonic() + self.round_trip
            return sent
        self._held += bytes(data)  # held until the segment in flight is acknowledged
        return len(data)

    def sendall(self, data, flags: int = 0) -> None:
        self.send(data, flags)

    def _release_held(self) -> None:
        if self._held:
            time.sleep(max(0.0, self._in_flight_until - time.monotonic()))
            held, self._held = self._held, b""
            super().sendall(held)
            self._in_flight_until = time.monotonic() + self.round_trip

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._release_held()
        return super().recv(size, flags)

    def close(self) -> None:
        try:
            self._release_held()
        except OSError:
            pass  # the peer is gone; nothing left to deliver
        super().close()
