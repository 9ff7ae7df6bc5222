"""boto3 sessions and clients: the standard credential chain, retries that survive throttling.

Credentials come from wherever boto3 finds them (environment, `--profile`, SSO, instance role,
CI's OIDC web identity); nothing here reads or stores a key. `AWS_ENDPOINT_URL` (boto3's own
setting) points every client at another endpoint, which is how the tests reach the emulator.
"""
from __future__ import annotations

import re
import threading
import time

import boto3
import botocore.config
import botocore.exceptions

from ..errors import PreflightError

RETRIES = {"mode": "adaptive", "max_attempts": 10}
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
# Every API call is bounded: each attempt by these timeouts, all attempts of one call together by
# CALL_DEADLINE (no retry starts that could not finish in time). An endpoint that accepts and never
# answers fails in about 30 s, not after 10 attempts of 60 s; throttling still gets its retries.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 15
CALL_DEADLINE = 45
_DEADLINE_KEY = "condor_seed_deadline"


def client_config(**overrides) -> botocore.config.Config:
    return botocore.config.Config(retries=dict(RETRIES), connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                                  **overrides)


def _start_call_clock(context, **_):
    context[_DEADLINE_KEY] = time.monotonic() + CALL_DEADLINE


def _no_retry_past_deadline(request_dict, **_):
    """False (no retry) when another full attempt would end after the call's deadline; None lets botocore decide."""
    deadline = request_dict.get("context", {}).get(_DEADLINE_KEY)
    if deadline is not None and time.monotonic() + CONNECT_TIMEOUT + READ_TIMEOUT > deadline:
        return False
    return None


def bound_calls(client):
    """Give every call of a botocore client the per-call deadline."""
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-call.{service}", _start_call_clock)
    # Ahead of botocore's own retry handler, which sits at this same level (more specific ones run first).
    client.meta.events.register_first(f"needs-retry.{service}", _no_retry_past_deadline)
    return client


def unreachable(exc: botocore.exceptions.HTTPClientError) -> str:
    """One line for a call that got no usable answer: which endpoint, and what happened."""
    endpoint = exc.kwargs.get("endpoint_url") or "the AWS endpoint"
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        what = f"accepted the connection but sent no answer within {READ_TIMEOUT} s"
    elif isinstance(exc, botocore.exceptions.ConnectTimeoutError):
        what = f"did not accept a connection within {CONNECT_TIMEOUT} s"
    else:
        what = "cannot be reached (connection refused, no route or unknown host)"
    return f"AWS endpoint {endpoint} {what}; gave up after retries (at most {CALL_DEADLINE} s per call)"


class Aws:
    """One credential source, clients per (service, region), created lazily and reused."""

    def __init__(self, profile: str | None = None, session: boto3.Session | None = None):
        try:
            self.session = session or boto3.Session(profile_name=profile)
        except botocore.exceptions.ProfileNotFound:
            raise PreflightError(f"AWS profile {profile!r} not found in your AWS config") from None
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()  # a boto3 Session is not thread-safe; its clients are

    def client(self, service: str, region: str):
        if not REGION_RE.match(region or ""):
            raise PreflightError(f"{region!r} is not an AWS region name (like us-east-1)")
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = bound_calls(self.session.client(service, region_name=region,
                                                                     config=client_config()))
            return self._clients[key]

    def ec2(self, region: str):
        return self.client("ec2", region)

    def ssm(self, region: str):
        return self.client("ssm", region)

    def caller_identity(self, region: str) -> dict:
        """Fail with one clear line when there are no usable credentials."""
        try:
            return self.client("sts", region).get_caller_identity()
        except botocore.exceptions.NoCredentialsError:
            raise PreflightError(
                "no AWS credentials found: set AWS_PROFILE / --profile, run `aws sso login`, or export credentials"
            ) from None
        except botocore.exceptions.ClientError as exc:
            raise PreflightError(f"AWS rejected the credentials: {exc.response['Error'].get('Message', exc)}") from None
        except botocore.exceptions.HTTPClientError as exc:
            raise PreflightError(unreachable(exc)) from None

    def known_regions(self) -> set[str]:
        """EC2 regions this botocore knows (offline); a newer region may still exist."""
        s = self.session
        return {r for p in s.get_available_partitions() for r in s.get_available_regions("ec2", p)}

    def default_region(self) -> str | None:
        return self.session.region_name
