"""Who may reach a launched seed: validated CIDRs and the security group's inbound rules (pure).

- 9618 (HTCondor's shared port) from COLLECTOR_CIDR, by default anywhere: annex workers get public
  addresses in whatever subnet AWS picks, and condor_annex's `HTCondorAnnex-CheckConnectivity` Lambda
  runs outside every VPC, so it reaches the seed's public address from an AWS address nobody can
  name in advance. The pool itself admits only holders of the pool password / a token.
- 22 only from the CIDR the user gives; "anywhere" only when they type it.
"""
from __future__ import annotations

import ipaddress

from ..errors import PreflightError

COLLECTOR_PORT = 9618
SSH_PORT = 22
ANYWHERE = ("0.0.0.0/0", "::/0")
DEFAULT_COLLECTOR_CIDR = "0.0.0.0/0"


def parse_cidr(text: str, flag: str) -> str:
    """A network in CIDR form (`203.0.113.7/32`, `2001:db8::/64`); host bits must be zero."""
    value = (text or "").strip()
    if "/" not in value:
        raise PreflightError(f"{flag} {text!r}: give a network with its prefix length, like 203.0.113.7/32")
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise PreflightError(f"{flag} {text!r}: not a CIDR network ({exc})") from None


def is_anywhere(cidr: str) -> bool:
    return cidr in ANYWHERE


def _rule(port: int, cidr: str, description: str) -> dict:
    ranges = ("Ipv6Ranges", "CidrIpv6") if ":" in cidr else ("IpRanges", "CidrIp")
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
            ranges[0]: [{ranges[1]: cidr, "Description": description}]}


def ingress_rules(collector_cidr: str, ssh_cidr: str | None) -> list[dict]:
    """The seed's inbound rules: HTCondor for annex workers, SSH only when a CIDR was given."""
    rules = [_rule(COLLECTOR_PORT, collector_cidr, "HTCondor: annex workers and condor_annex's connectivity check")]
    if ssh_cidr:
        rules.append(_rule(SSH_PORT, ssh_cidr, "SSH for the seed's users"))
    return rules
