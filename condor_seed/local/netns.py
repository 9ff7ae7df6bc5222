"""A network namespace laid out like an EC2 instance's network, for the local smoke test.

Inside: `eth0` with the private address (one end of a veth pair; the host holds the other end,
where emulated AWS endpoints listen), the public IPv4 reachable through a *local route* but on no
interface (EC2's public address is 1:1 NAT, never on the instance), and 169.254.169.254 as a local
route too, so a metadata emulator can listen on it without HTCondor ever seeing it as an interface
address. Commands enter it with `prefix` (nsenter); Python servers bind in it with `bind_inside`.
Everything is removed on exit: deleting the namespace removes the veth pair with it.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import random
import subprocess
import threading
from dataclasses import dataclass

from ..errors import SeedError

METADATA_IP = "169.254.169.254"
CLONE_NEWNET = 0x40000000
NAME_PREFIX = "condor-seed-"


def _ip(*args: str, namespace: str | None = None) -> None:
    cmd = ["ip", *(["-n", namespace] if namespace else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SeedError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def _free_public_ip() -> str:
    """A TEST-NET-3 address no route on the host uses yet (the host routes it to the instance)."""
    for n in random.sample(range(10, 250), 240):
        address = f"203.0.113.{n}"
        if not subprocess.run(["ip", "route", "show", f"{address}/32"], capture_output=True, text=True).stdout:
            return address
    raise SeedError("no free 203.0.113.0/24 address for the instance's public IP")


def _free_subnet() -> int:
    """A third octet for 10.213.N.0/24 that no interface on the host uses yet."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for n in random.sample(range(1, 255), 254):
        if f" 10.213.{n}." not in used:
            return n
    raise SeedError("no free 10.213.N.0/24 subnet for the instance network")


@dataclass(frozen=True)
class InstanceNetwork:
    name: str
    host_ip: str  # the host's end of the veth: where emulated cloud endpoints listen
    private_ip: str  # eth0 inside the namespace
    public_ip: str  # a local route inside, on no interface (like EC2's NAT); the host routes it there

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def prefix(self) -> list[str]:
        """Put in front of a command to run it inside the namespace."""
        return ["nsenter", f"--net={self.path}"]

    def bind_inside(self, factory):
        """Call `factory()` (which creates listening sockets) from a thread inside the namespace.

        A socket belongs to the namespace it was created in, whichever thread serves it later.
        """
        outcome: dict = {}

        def enter_and_build():
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    outcome["error"] = OSError(ctypes.get_errno(), f"setns {self.path}")
                    return
                outcome["value"] = factory()
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc
            finally:
                os.close(fd)

        # A throw-away thread: its network namespace changes for good, the caller's never does.
        thread = threading.Thread(target=enter_and_build, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


@contextlib.contextmanager
def instance_network(public_ip: str | None = None):
    """Create the namespace and its links; always delete them again. The host ("the internet")
    reaches the public IP through the veth, the way EC2's NAT forwards it to the instance."""
    public_ip = public_ip or _free_public_ip()
    n = _free_subnet()
    suffix = os.urandom(2).hex()
    net = InstanceNetwork(name=f"{NAME_PREFIX}{os.getpid()}-{suffix}", host_ip=f"10.213.{n}.1",
                          private_ip=f"10.213.{n}.2", public_ip=public_ip)
    host_link = f"csh-{suffix}"
    _ip("netns", "add", net.name)
    try:
        _ip("link", "add", host_link, "type", "veth", "peer", "name", "eth0", "netns", net.name)
        _ip("addr", "add", f"{net.host_ip}/24", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("link", "set", "lo", "up", namespace=net.name)
        _ip("addr", "add", f"{net.private_ip}/24", "dev", "eth0", namespace=net.name)
        _ip("link", "set", "eth0", "up", namespace=net.name)
        for address in (METADATA_IP, net.public_ip):
            _ip("route", "add", "local", f"{address}/32", "dev", "lo", "table", "local", namespace=net.name)
        _ip("route", "add", f"{net.public_ip}/32", "via", net.private_ip, "dev", host_link)  # gone with the link
        yield net
    finally:
        subprocess.run(["ip", "netns", "del", net.name], capture_output=True)
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)  # gone with the namespace already


def leftover_namespaces() -> list[str]:
    """Namespaces a killed run left behind (their creator's pid is gone)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    stale = []
    for name in names:
        if name.startswith(NAME_PREFIX):
            pid = name.removeprefix(NAME_PREFIX).split("-")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                stale.append(name)
    return stale


def remove_leftovers() -> list[str]:
    stale = leftover_namespaces()
    for name in stale:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return stale
