"""Record the AWS calls a REAL `condor_annex` makes: -setup, -check-setup, annexes, a lease update, -status.

Debian's HTCondor (23.9.6, the last generation that ships `condor_annex` and `ec2_gahp`) runs in a
chroot as an unprivileged user with key files, exactly as a login user on a seed would. In 23.9/24.0
`condor_annex` always builds its endpoints from the region (`ANNEX_DEFAULT_AWS_REGION` defaults to
us-east-1 and then overrides `ANNEX_DEFAULT_*_URL`), so it talks to the real AWS host names over
HTTPS. This recorder therefore runs in its own network namespace (`unshare --net`): the AWS names
resolve to 127.0.0.1 in the chroot's /etc/hosts, the moto emulator answers on 127.0.0.1:443 with a
certificate from a throw-away CA that only the chroot trusts, and a middleware in front of moto names
the IAM action of every signed request (and the key that signed it). Nothing leaves the namespace.

What cannot exist here and stands in (each said where it is done):
- HTCondor's CloudFormation templates live on S3 on the internet (s3://condor-annex/*-11.json); moto
  reads a TemplateURL from its own S3, so TEMPLATES below are stand-ins with the same resource types
  and the same output names (`-setup` turns the outputs into ~/.condor/user_config).
- The `HTCondorAnnex-CheckConnectivity` Lambda runs in AWS; moto runs Lambda code only in Docker.
  `connectivity_stand_in` answers its invocations by doing what the published function does (an
  unauthenticated DC_QUERY_INSTANCE to the host and port it is given), at invocation time.
- No instance boots: RunInstances is recorded, no annex worker joins.

Re-record (as root, from the checkout; ROOT is a tree with Debian's htcondor, e.g. the unpacked local
seed image):
    unshare --net python3 tests/local/annex_recorder.py ROOT /tmp/annex.json iam/seed-instance-calls.json
(the collector it starts lives in the private namespace: nothing touches the host's loopback.)
"""
from __future__ import annotations

import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs

from condor_seed.emulator.tls import moto_app, serve_https, throwaway_tls

REGION = "us-east-1"
USER = "alice"
HOME = f"/home/{USER}"
COLLECTOR_PORT = 9618
ARRANGER = "arranger"  # the key this process arranges the emulator with (never recorded)
# The names condor_annex 23.9/24.0 derives from the region (src/annex/annex.cpp, annex_main).
SERVICE_HOSTS = [f"{svc}.{REGION}.amazonaws.com" for svc in ("ec2", "cloudformation", "lambda", "events", "s3")]
CERT_NAMES = [f"*.{REGION}.amazonaws.com", f"*.s3.{REGION}.amazonaws.com", "s3.amazonaws.com"]
DC_QUERY_INSTANCE = 60045  # condor_commands.h: DC_BASE + 45

_ASSUME = {svc: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole"],
                                                         "Principal": {"Service": [f"{svc}.amazonaws.com"]}}]}
           for svc in ("ec2", "lambda")}


def _function(key: str, name: str | None = None) -> dict:
    props = {"Role": {"Fn::GetAtt": ["LeaseFunctionRole", "Arn"]}, "Runtime": "python3.12", "Handler": "f.handler",
             "Code": {"S3Bucket": {"Fn::Join": ["-", ["condor-annex", {"Ref": "AWS::Region"}]]}, "S3Key": key}}
    if name:
        props["FunctionName"] = name
    return {"Type": "AWS::Lambda::Function", "DependsOn": "LeaseFunctionRole", "Properties": props}


# Stand-ins for s3://condor-annex/{bucket,template,role,security-group}-11.json: the resource types
# and output names of HTCondor's generators (src/annex/setup/generate-*), not their content.
TEMPLATES = {
    "bucket-11.json": {
        "Resources": {"ConfigurationBucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {"S3BucketName": {"Value": {"Ref": "ConfigurationBucket"}}}},
    "template-11.json": {
        "Parameters": {"S3BucketName": {"Type": "String"}},
        "Resources": {
            "LeaseFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": _ASSUME["lambda"]}},
            "sfrLeaseFunction": _function("sfr-lease-11.zip"),
            "odiLeaseFunction": _function("odi-lease-11.zip"),
            "ccFunction": _function("check-connectivity-11.zip", "HTCondorAnnex-CheckConnectivity"),
            "odiLeaseFunctionPermissions": {"Type": "AWS::Lambda::Permission", "Properties": {
                "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
                "FunctionName": {"Fn::GetAtt": ["odiLeaseFunction", "Arn"]}}}},
        "Outputs": {f"{k}LeaseFunctionARN": {"Value": {"Fn::GetAtt": [f"{k}LeaseFunction", "Arn"]}} for k in ("sfr", "odi")}},
    "role-11.json": {
        "Parameters": {"S3BucketName": {"Type": "String"}},
        "Resources": {
            "InstanceConfigurationRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": _ASSUME["ec2"]}},
            "InstanceConfigurationProfile": {"Type": "AWS::IAM::InstanceProfile",
                                             "Properties": {"Roles": [{"Ref": "InstanceConfigurationRole"}]}}},
        "Outputs": {"InstanceProfileARN": {"Value": {"Fn::GetAtt": ["InstanceConfigurationProfile", "Arn"]}}}},
    "security-group-11.json": {
        "Resources": {"SecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "HTCondor annex workers",
            "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": "9618", "ToPort": "9618", "CidrIp": "0.0.0.0/0"}]}}},
        "Outputs": {"SecurityGroupID": {"Value": {"Fn::GetAtt": ["SecurityGroup", "GroupId"]}}}},
}
# The phases, in order, as the login user types them (after -setup wrote ~/.condor/user_config), and
# what condor_annex prints when the phase did what it should (its exit code is 0 on failure too).
PHASES = {
    "setup": (["-setup", f"{HOME}/.condor/publicKeyFile", f"{HOME}/.condor/privateKeyFile"], "Setup successful."),
    "check-setup": (["-check-setup"], "Your setup looks OK."),
    "create": (["-count", "1", "-annex-name", "recorded", "-aws-on-demand-ami-id", "AMI", "-yes"], "Annex started."),
    "update": (["-annex-name", "recorded", "-duration", "2"], "Lease updated."),
    "status": (["-status"], "recorded"),
    # RunInstances refused (moto validates instance types here): condor_annex rolls back what it made.
    "create-rolled-back": (["-count", "1", "-annex-name", "refused", "-aws-on-demand-instance-type", "no.such-type",
                            "-aws-on-demand-ami-id", "AMI", "-yes"], "InvalidInstanceType"),
}


# --- the emulator: moto over TLS on 127.0.0.1:443, naming the IAM action of every request --------

# The IAM action of a REST request (Lambda, S3): method and path, as AWS's service authorization
# reference names them. Query APIs (EC2, CloudFormation) carry Action=, JSON APIs (Events) X-Amz-Target.
REST_ACTIONS = [
    ("lambda", re.compile(r"POST /2015-03-31/functions/[^/]+/invocations$"), "lambda:InvokeFunction"),
    ("lambda", re.compile(r"GET /2015-03-31/functions/[^/]+$"), "lambda:GetFunction"),
    ("s3", re.compile(r"PUT /[^?]+$"), "s3:PutObject"),  # virtual-host style: the path is the key
]


def iam_action(service: str, method: str, path: str, target: str | None, form: dict) -> str:
    if "Action" in form:
        return f"{service}:{form['Action'][0]}"
    if target:
        return f"{service}:{target.split('.')[-1]}"
    for svc, pattern, action in REST_ACTIONS:
        if svc == service and pattern.match(f"{method} {path}"):
            return action
    return f"UNMAPPED {service} {method} {path}"  # the recording test fails on it: map it above


class ActionLog:
    """WSGI middleware in front of moto: the IAM action of every signed request, the key that signed it,
    and moto's status. Also works around one emulator gap (see __call__)."""

    def __init__(self, app):
        self.app = app
        self.entries: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if "Credential=" not in auth or f"Credential={ARRANGER}/" in auth:  # arranging, not condor_annex
            return self.app(environ, start_response)
        key, _, region, service = auth.split("Credential=")[1].split(",")[0].split("/")[:4]
        form = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            form.update(parse_qs(body.decode()))
        if service == "lambda" and environ.get("CONTENT_TYPE") == "application/x-amz-json-1.1":
            # ec2_gahp sends Lambda's REST calls as x-amz-json-1.1, which AWS accepts and moto 5.2.5 answers
            # with an empty 404 (it takes it for a JSON-protocol call); say application/json instead.
            environ["CONTENT_TYPE"] = "application/json"
        entry = {"action": iam_action(service, environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                      environ.get("HTTP_X_AMZ_TARGET"), form),
                 "key": key, "region": region, "session_token": "HTTP_X_AMZ_SECURITY_TOKEN" in environ}

        def recording_start(status, headers, *args):
            entry["status"] = int(status.split()[0])
            with self._lock:
                self.entries.append(entry)
            return start_response(status, headers, *args)

        return self.app(environ, recording_start)

    def actions_since(self, mark: int) -> list[str]:
        return sorted({e["action"] for e in self.entries[mark:]})


def connectivity_stand_in() -> None:
    """Answer HTCondorAnnex-CheckConnectivity as the published function does; no other function runs."""
    from moto.awslambda.models import LambdaFunction

    def invoke(function, event):
        if function.function_name != "HTCondorAnnex-CheckConnectivity":
            return json.dumps({"errorMessage": f"{function.function_name} does not run here"}), True, ""
        try:
            instance = query_instance(event["condor_host"], int(event["condor_port"]))
            answer = {"success": "1", "result": instance, "description": "DC_QUERY_INSTANCE answered"}
        except OSError as err:
            answer = {"success": "0", "result": "", "description": f"Could not connect: {err}"}
        return json.dumps(answer), False, ""

    LambdaFunction._invoke_lambda = invoke


def arrange(aws) -> dict:
    """What exists before the user runs anything: their IAM user and key, the template buckets."""
    iam, s3 = aws("iam"), aws("s3")
    iam.create_user(UserName=USER)
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    for bucket in ("condor-annex", f"condor-annex-{REGION}"):
        s3.create_bucket(Bucket=bucket)
    for name, body in TEMPLATES.items():
        s3.put_object(Bucket="condor-annex", Key=name, Body=json.dumps({"AWSTemplateFormatVersion": "2010-09-09", **body}))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("f.py", "def handler(event, context):\n    return {}\n")
    for name in ("sfr-lease-11.zip", "odi-lease-11.zip", "check-connectivity-11.zip"):
        s3.put_object(Bucket=f"condor-annex-{REGION}", Key=name, Body=code.getvalue())
    image = aws("ec2").register_image(Name="annex-worker", RootDeviceName="/dev/xvda")["ImageId"]
    return {"key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"], "image": image}


# --- the chroot: the user's files, a collector, and condor_annex as that user ------------------

def prepare_tree(root: Path, ca: Path, creds: dict) -> None:
    subprocess.run(["chroot", str(root), "sh", "-c", f"id {USER} >/dev/null 2>&1 || useradd -m {USER}"], check=True)
    (root / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/share/ca-certificates/annex-recorder.crt").write_bytes(ca.read_bytes())
    subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)
    with open(root / "etc/hosts", "a") as hosts:
        hosts.write(f"127.0.0.1 {socket.gethostname()} {' '.join(SERVICE_HOSTS)}\n")
    condor = root / "home" / USER / ".condor"
    condor.mkdir(parents=True, exist_ok=True)
    files = {"publicKeyFile": creds["key_id"], "privateKeyFile": creds["secret"],
             "pool_password": os.urandom(24).hex(),
             # COLLECTOR_HOST and SEC_PASSWORD_FILE: what -check-setup and the workers' tarball need.
             "user_config": f"COLLECTOR_HOST = 127.0.0.1:{COLLECTOR_PORT}\n"
                            f"SEC_PASSWORD_FILE = {HOME}/.condor/pool_password\n"
                            f"ANNEX_GAHP_LOG = {HOME}/.condor/annex_gahp.log\nANNEX_GAHP_DEBUG = D_FULLDEBUG\n"}
    for name, text in files.items():
        (condor / name).write_text(text)
        (condor / name).chmod(0o600)
    subprocess.run(["chroot", str(root), "chown", "-R", f"{USER}:{USER}", HOME], check=True)


def start_collector(root: Path) -> subprocess.Popen:
    """A bare collector (the seed's role in this recording): annex creation asks it for its instance id."""
    conf = root / "etc/annex-recorder-collector.config"
    conf.write_text("RELEASE_DIR = /usr\nSBIN = /usr/sbin\nLIBEXEC = /usr/libexec/condor\n"
                    "LOCAL_DIR = /var/lib/annex-recorder\nLOG = $(LOCAL_DIR)/log\nSPOOL = $(LOCAL_DIR)/spool\n"
                    "LOCK = $(LOCAL_DIR)/lock\nRUN = $(LOCAL_DIR)/run\n"
                    f"COLLECTOR_HOST = 127.0.0.1:{COLLECTOR_PORT}\nNETWORK_INTERFACE = 127.0.0.1\n"
                    "USE_SHARED_PORT = False\nALLOW_READ = *\nCONDOR_ADMIN =\n")
    for sub in ("log", "spool", "lock", "run"):
        (root / "var/lib/annex-recorder" / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["chroot", str(root), "chown", "-R", "condor:condor", "/var/lib/annex-recorder"], check=True)
    proc = subprocess.Popen(["chroot", str(root), "/usr/sbin/condor_collector", "-f", "-p", str(COLLECTOR_PORT)],
                            env={"PATH": "/usr/sbin:/usr/bin", "CONDOR_CONFIG": "/etc/annex-recorder-collector.config"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            query_instance("127.0.0.1", COLLECTOR_PORT)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the collector did not answer within 20 s")


def query_instance(host: str, port: int) -> str:
    """What the HTCondorAnnex-CheckConnectivity Lambda does: an unauthenticated DC_QUERY_INSTANCE (CEDAR)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(struct.pack("!BIQ", 1, 8, DC_QUERY_INSTANCE))
        header = _recv(sock, 5)
        _, length = struct.unpack("!BI", header)
        return _recv(sock, length).decode().rstrip("\0")


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def as_user(root: Path, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", f"--userspec={USER}:{USER}", str(root), *argv], capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin:/usr/sbin", "HOME": HOME, "USER": USER,
                                                "LANG": "C.UTF-8"})


def condor_annex_version(root: Path) -> str:
    return as_user(root, ["condor_version"]).stdout.split()[1]


def record(root: Path, workdir: Path) -> dict:
    import boto3
    import requests
    import urllib3

    tls = throwaway_tls(CERT_NAMES, "condor-seed annex recorder CA")
    ca = workdir / "ca.crt"
    ca.write_text(tls.ca_pem)
    connectivity_stand_in()
    log = ActionLog(moto_app())
    server = serve_https(log, "127.0.0.1", 443, tls)
    os.environ.update(AWS_ACCESS_KEY_ID=ARRANGER, AWS_SECRET_ACCESS_KEY=ARRANGER)
    # The arranging side (this process, talking to its own server) skips verification; condor_annex verifies.
    endpoint = "https://127.0.0.1:443"
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify=False
    session.verify = False
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def aws(service):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint, verify=False)

    collector = None
    try:
        creds = arrange(aws)
        prepare_tree(root, ca, creds)
        collector = start_collector(root)
        phases, outputs = {}, {}
        for phase, (args, expect) in PHASES.items():
            if phase == "create":
                bucket = _user_setting(root, "ANNEX_DEFAULT_S3_BUCKET")
                with open(root / "etc/hosts", "a") as hosts:  # virtual-host S3 upload of the workers' tarball
                    hosts.write(f"127.0.0.1 {bucket}.s3.{REGION}.amazonaws.com\n")
            argv = ["condor_annex", *(creds["image"] if a == "AMI" else a for a in args)]
            mark = len(log.entries)
            proc = as_user(root, argv)
            said = proc.stdout + proc.stderr
            outputs[phase] = {"argv": argv, "expected": expect, "as_expected": expect in said, "said": said}
            phases[phase] = log.actions_since(mark)
        return {"condor_annex": condor_annex_version(root), "phases": phases, "outputs": outputs,
                "signed_with": sorted({e["key"] for e in log.entries}), "user_key": creds["key_id"],
                "failed_requests": [e for e in log.entries if e["status"] >= 400]}
    finally:
        if collector:
            collector.kill()
            collector.wait()
        server.shutdown()
        server.server_close()


def _user_setting(root: Path, name: str) -> str:
    """A value -setup appended to ~/.condor/user_config (prefixed with the region)."""
    for line in (root / "home" / USER / ".condor/user_config").read_text().splitlines():
        left, _, value = line.partition("=")
        if left.strip().split(".")[-1] == name:
            return value.strip()
    raise KeyError(f"{name} not in ~/.condor/user_config after -setup")


def calls_document(result: dict) -> dict:
    """The part of a recording that is committed (iam/seed-instance-calls.json): what was called, per phase."""
    return {"recorded_with": f"condor_annex {result['condor_annex']} (Debian) against moto, by tests/local/annex_recorder.py",
            "phases": result["phases"]}


def main(argv: list[str]) -> int:
    """ROOT OUT.json [CALLS.json]: record into OUT.json (everything) and, if given, CALLS.json (committed shape)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's condor_seed
    from condor_seed.local.chroot import mounted

    root, out = Path(argv[0]).resolve(), Path(argv[1])
    os.environ.update(MOTO_EC2_LOAD_DEFAULT_AMIS="false", MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    workdir = out.parent / (out.name + ".work")
    workdir.mkdir(parents=True, exist_ok=True)
    with mounted(root):
        result = record(root, workdir)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if len(argv) > 2:
        Path(argv[2]).write_text(json.dumps(calls_document(result), indent=2) + "\n")
    for phase, said in result["outputs"].items():
        print(f"{phase:20} {'ok' if said['as_expected'] else 'NOT AS EXPECTED'}  {' '.join(result['phases'][phase])}")
    return 0 if all(said["as_expected"] for said in result["outputs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
