"""Answers for the account calls the emulator lacks, and injected failures, on a boto3 session.

`Emulated` hooks the boto3 session the code under test uses:
- the `Recorder` (a `before-parameter-build` hook) records every call (region, operation, API
  parameters), so tests can assert what was asked for, in which order, and that a dry run asked for
  no change at all;
- a `before-call` hook answers the calls the emulator lacks (image block public access get/disable,
  EnableImageDeprecation) and injected failures. botocore has already validated the request
  against the real EC2 API model at that point, and every canned answer is validated against the
  model's output shape here (what botocore's Stubber does), so they cannot drift from the real API.
Everything else goes to the emulator unchanged.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict

import boto3
from botocore.awsrequest import AWSResponse

from .aws import Call, Recorder, _response as validated_response

MUTATING = ("Create", "Copy", "Modify", "Put", "Delete", "Deregister", "Enable", "Disable", "Reset", "Register")


def is_mutating(call: Call) -> bool:
    return call.operation.startswith(MUTATING)


class Emulated:
    def __init__(self, session: boto3.Session):
        self.recorder = Recorder(session)
        self.calls: list[Call] = self.recorder.calls
        self.forgotten: set[str] = set()
        self.bpa: dict[str, str] = defaultdict(lambda: "unblocked")  # region -> state
        self.bpa_managed_by: dict[str, str] = defaultdict(lambda: "account")
        self.polls_until_unblocked = 1  # GetImageBlockPublicAccessState reads after a disable that still say blocked
        self.deprecations: dict[tuple[str, str], dt.datetime] = {}
        self.failures: list[tuple[str, str, object, str]] = []  # (region, operation, predicate, code)
        self._pending_unblock: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        session.events.register("before-parameter-build", self._current)
        session.events.register("before-call", self._answer)

    # ----------------------------------------------------------------- recording
    def _current(self, params, model, context, **_):
        self._local.call = Call(model.service_model.signing_name, model.name, dict(params),
                                context.get("client_region"))

    def forget(self) -> None:
        """Start a fresh record (the IAM check at teardown still sees what was forgotten)."""
        self.forgotten |= self.recorder.actions()
        self.calls.clear()

    def actions(self) -> set[str]:
        return self.forgotten | self.recorder.actions()

    def ops(self, region: str | None = None, operation: str | None = None) -> list[Call]:
        return [c for c in self.calls if (region is None or c.region == region)
                and (operation is None or c.operation == operation)]

    def mutating(self) -> list[Call]:
        return [c for c in self.calls if is_mutating(c)]

    def fail(self, region: str, operation: str, predicate=lambda params: True, code="InternalError") -> None:
        self.failures.append((region, operation, predicate, code))

    # ----------------------------------------------------------------- answers
    def _answer(self, model, context, **_):
        call: Call = self._local.call
        for region, operation, predicate, code in self.failures:
            if (region, operation) == (call.region, call.operation) and predicate(call.params):
                return _error(code, f"injected failure of {operation} in {region}")
        handler = getattr(self, f"_{call.operation}", None)
        if handler is None:
            return None  # the emulator answers
        return validated_response(model, handler(call))  # checked against the model's output shape

    def _GetImageBlockPublicAccessState(self, call: Call) -> dict:
        """mocked: the emulator lacks GetImageBlockPublicAccessState"""
        with self._lock:
            left = self._pending_unblock.get(call.region)
            if left is not None:
                if left <= 0:
                    self.bpa[call.region] = "unblocked"
                    del self._pending_unblock[call.region]
                else:
                    self._pending_unblock[call.region] = left - 1
        return {"ImageBlockPublicAccessState": self.bpa[call.region], "ManagedBy": self.bpa_managed_by[call.region]}

    def _DisableImageBlockPublicAccess(self, call: Call) -> dict:
        """mocked: the emulator lacks DisableImageBlockPublicAccess; like AWS, it takes a while to apply"""
        with self._lock:
            self._pending_unblock[call.region] = self.polls_until_unblocked
        return {"ImageBlockPublicAccessState": "unblocked"}

    def _EnableImageDeprecation(self, call: Call) -> dict:
        """mocked: the emulator lacks EnableImageDeprecation"""
        self.deprecations[(call.region, call.params["ImageId"])] = call.params["DeprecateAt"]
        return {"Return": True}


def _error(code: str, message: str):
    return AWSResponse("https://ec2.emulated", 400, {}, None), {
        "Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
