"""The cloud around a locally booted seed: instance metadata and AWS endpoints, all emulated.

* Instance metadata on 169.254.169.254:80 inside the instance's network namespace (the project's
  IMDS emulator): public IPv4 and hostname, region, and the instance role's temporary credentials.
* AWS (EC2, CloudFormation, S3, Lambda, CloudWatch Events) from the moto emulator, over HTTPS on the
  host's end of the veth, under the regional names AWS uses (`ec2.REGION.amazonaws.com`, ...) in the
  seed's /etc/hosts. condor_annex ignores ANNEX_DEFAULT_*_URL whenever a region is configured
  (src/annex/annex.cpp builds `https://SERVICE.REGION.amazonaws.com` from it), and the seed does
  configure one, so the emulator answers under those names with a certificate from a throw-away CA
  that only the smoke test's copy of the image trusts.
* Every request the emulator answers is recorded with the key id and session token it was signed
  with: proof that condor_annex used the role's credentials from the metadata service.
* What AWS has and the emulator cannot fetch: HTCondor's published condor_annex setup templates and
  Lambda code (templates/condor-annex-setup, made from HTCondor's source), staged into the
  emulator's S3 where CloudFormation looks for them.
* What the emulator cannot run: Lambda code (moto runs it only in Docker). Its Docker-less Lambda
  answers what we queue, so for HTCondor's connectivity check (`HTCondorAnnex-CheckConnectivity`)
  we queue what HTCondor's own handler (check-connectivity.py) answers when run from the host, i.e.
  from outside the VPC, where the public hostname resolves to the public IP (its own /etc/hosts in a
  private mount namespace) and the public IP is routed to the instance as EC2's NAT would. Its
  socket crosses an emulated internet (internet_path.py): the check's outcome depends on how its
  bytes arrive, see `check_connectivity_from_outside`.
"""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..emulator.tls import moto_app, serve_https, throwaway_tls
from ..imds import ImdsEmulator, RoleCredentials
from ..paths import TEMPLATES_DIR
from .netns import METADATA_IP, InstanceNetwork

REGION = "us-west-2"
# condor_annex's endpoints (its ANNEX_DEFAULT_<knob>_URL knobs) -> the service's host name prefix
SERVICES = {"EC2": "ec2", "CF": "cloudformation", "S3": "s3", "LAMBDA": "lambda", "CWE": "events"}
SETUP_FILES = TEMPLATES_DIR / "condor-annex-setup"
SETUP_VERSION = 11  # src/annex/annex-setup.cpp: "condor-annex/bucket-11.json" etc.
_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/")


@dataclass(frozen=True)
class SignedRequest:
    service: str
    region: str
    access_key_id: str
    session_token: str | None
    method: str
    path: str
    status: list = field(default_factory=list, compare=False)  # filled in when moto answers
    body: bytes = field(default=b"", compare=False, repr=False)  # Lambda invocations only (small)
    action: str = field(default="", compare=False)  # the IAM action, e.g. "cloudformation:CreateStack"


class _Recorder:
    """WSGI middleware: note who signed each request, then let moto answer it. `on_lambda(request)`
    runs before moto answers a Lambda invocation (to queue the function's result)."""

    def __init__(self, app, requests: list, on_lambda):
        self.app, self.requests, self.on_lambda = app, requests, on_lambda

    def __call__(self, environ, start_response):
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not match:
            return self.app(environ, start_response)
        service, path, method = match.group(3), environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        invocation = service == "lambda" and path.endswith("/invocations")
        body = b""
        if invocation or environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        request = SignedRequest(service, match.group(2), match.group(1), environ.get("HTTP_X_AMZ_SECURITY_TOKEN"),
                                method, path, body=body if invocation else b"",
                                action=_action(service, method, path, body, environ))
        self.requests.append(request)
        if invocation:
            # Emulator gap: moto 5.2.5 answers an Invoke sent as application/x-amz-json-1.1 (what
            # HTCondor's GAHP sends; AWS accepts any type) with an empty 404.
            environ["CONTENT_TYPE"] = "application/json"
            self.on_lambda(request)

        def noting_status(status, headers, *exc_info):
            request.status.append(int(status.split()[0]))
            return start_response(status, headers, *exc_info)

        return self.app(environ, noting_status)


_IAM_PREFIX = {"cloudformation": "cloudformation", "ec2": "ec2", "s3": "s3", "lambda": "lambda", "events": "events"}


def _action(service: str, method: str, path: str, body: bytes, environ: dict) -> str:
    """The IAM action a request needs: query protocols name it (Action=), JSON ones in X-Amz-Target,
    REST ones by method and path (only the forms condor_annex uses)."""
    from urllib.parse import parse_qs

    name = (parse_qs(body.decode(errors="replace")).get("Action") or parse_qs(environ.get("QUERY_STRING", ""))
            .get("Action") or [""])[0]
    if not name and environ.get("HTTP_X_AMZ_TARGET"):
        name = environ["HTTP_X_AMZ_TARGET"].rsplit(".", 1)[-1]
    if not name and service == "lambda":
        name = "InvokeFunction" if path.endswith("/invocations") else "GetFunction" if method == "GET" else ""
    if not name and service == "s3":
        name = {"PUT": "PutObject", "GET": "GetObject", "DELETE": "DeleteObject"}.get(method, "")
    return f"{_IAM_PREFIX.get(service, service)}:{name or method + ' ' + path}"


def public_hostname(public_ip: str, region: str) -> str:
    """EC2's public DNS name for an address (split-horizon: the private IP inside the VPC)."""
    return f"ec2-{public_ip.replace('.', '-')}.{region}.compute.amazonaws.com"


@dataclass
class EmulatedCloud:
    net: InstanceNetwork
    imdsv1: bool = True  # HttpTokens=optional (the seed's documented launch setting)
    region: str = REGION
    role: RoleCredentials = field(default_factory=RoleCredentials.random)
    requests: list[SignedRequest] = field(default_factory=list)
    connectivity_checks: list[str] = field(default_factory=list)  # what the stand-in Lambda answered

    def __post_init__(self):
        self._moto = None
        self.imds: ImdsEmulator | None = None
        self.public_hostname = public_hostname(self.net.public_ip, self.region)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "EmulatedCloud":
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        from moto.core.models import default_user_config

        default_user_config["lambda"] = {"use_docker": False}  # functions answer what we queue
        from moto.moto_api._internal.models import moto_api_backend
        moto_api_backend.reset()  # the emulator's state is per process: each cloud starts empty
        tls = throwaway_tls([self.host(s) for s in SERVICES.values()] + [f"*.{self.host('s3')}", self.net.host_ip],
                            "condor-seed smoke test CA")
        self.ca_pem = tls.ca_pem
        self._scratch = tempfile.TemporaryDirectory(prefix="condor-seed-cloud-")
        self._ca_file = f"{self._scratch.name}/ca.pem"
        Path(self._ca_file).write_text(self.ca_pem)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
        self._moto = serve_https(_Recorder(moto_app(), self.requests, self._run_lambda), self.net.host_ip, 443, tls)
        self.imds = self.net.bind_inside(lambda: ImdsEmulator(
            public_ip=self.net.public_ip, host=METADATA_IP, port=80, public_hostname=self.public_hostname,
            region=self.region, role=self.role, imdsv1=self.imdsv1, local_ipv4=self.net.private_ip))
        self.imds.start()
        self._stage_annex_setup_files()
        return self

    def stop(self) -> None:
        if self.imds:
            self.imds.stop()
        if self._moto:
            self._moto.shutdown()
            self._moto.server_close()
            self._scratch.cleanup()

    def __enter__(self) -> "EmulatedCloud":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- what the seed is told
    def host(self, service: str) -> str:
        return f"{service}.{self.region}.amazonaws.com"

    def endpoint(self, service: str) -> str:
        return f"https://{self.host(service)}"

    def hosts_line(self) -> str:
        """/etc/hosts entry: every service's endpoint name -> the host's end of the veth."""
        return f"{self.net.host_ip}\t{' '.join(self.host(s) for s in SERVICES.values())}\n"

    def bucket_hosts_line(self) -> str:
        """/etc/hosts entry for every bucket's virtual host (`BUCKET.s3.REGION.amazonaws.com`, where the
        GAHP uploads), as DNS resolves them on AWS."""
        s3 = self.host("s3")
        names = [f"{b['Name']}.{s3}" for b in self.client("s3").list_buckets()["Buckets"]]
        return f"{self.net.host_ip}\t{' '.join(names)}\n"

    def client(self, service: str, region: str | None = None):
        """A boto3 client for setting up the emulator from the host (not the seed's credentials)."""
        import boto3
        return boto3.client(service, region_name=region or self.region, endpoint_url=f"https://{self.net.host_ip}",
                            verify=self._ca_file, aws_access_key_id="emulator-admin",
                            aws_secret_access_key="emulator-admin")

    def actions_by_role(self) -> list[str]:
        """The IAM actions the seed's role was used for (what its instance policy must allow)."""
        return sorted({r.action for r in self.signed_by_role()})

    def signed_by_role(self) -> list[SignedRequest]:
        return [r for r in self.requests
                if r.access_key_id == self.role.access_key_id and r.session_token == self.role.token]

    # ---------------------------------------------------------------- Lambda code the emulator cannot run
    def _run_lambda(self, request: SignedRequest) -> None:
        if "HTCondorAnnex-CheckConnectivity" not in request.path:
            return  # other functions get moto's default answer
        from moto.awslambda_simple.models import lambda_simple_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        answer = self.check_connectivity_from_outside(request.body)
        # exactly this invocation's answer (a retried or earlier invocation must not leave one behind)
        lambda_simple_backends[DEFAULT_ACCOUNT_ID][request.region].lambda_simple_results_queue[:] = [answer]

    def check_connectivity_from_outside(self, event: bytes) -> str:
        """HTCondor's check-connectivity.py handler, run on the host (outside the VPC).

        The handler sends a raw DC_QUERY_INSTANCE to port 9618, where the seed's shared_port daemon
        listens; condor_annex compares the answer with the collector's instance id. shared_port
        answers that command itself unless it hands the connection on to the collector, and
        (HTCondor <= 24.0, before HTCONDOR-3420) it hands it on exactly when its peek at the command
        sees a short read: the lone header byte a sender's TCP puts on a real network first, the
        rest one round trip later. Over the emulated network's zero distance all 13 bytes usually
        arrive together and shared_port answered with its own id ("Connectivity check found wrong
        collector", 3 in 10 smoke tests); so the handler's socket crosses `AcrossTheInternet`."""
        hosts = Path(self._scratch.name) / "hosts-outside"
        hosts.write_text(f"127.0.0.1\tlocalhost\n{self.net.public_ip}\t{self.public_hostname}\n")
        runner = ("import json, socket, sys; from condor_seed.local.internet_path import AcrossTheInternet; "
                  "socket.socket = AcrossTheInternet; sys.path.insert(0, sys.argv[1]); import importlib; "
                  "h = importlib.import_module('check-connectivity'); "
                  "r = h.condor_ping_handler(json.loads(sys.stdin.read()), None); "
                  "print(json.dumps(r, default=lambda b: b.decode(errors='replace')))")
        proc = subprocess.run(["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
                               str(hosts), sys.executable, "-c", runner, str(SETUP_FILES)],
                              input=event.decode(), capture_output=True, text=True, timeout=30)
        self.connectivity_checks.append(proc.stdout.strip() or proc.stderr.strip()[-500:])
        return proc.stdout.strip() or json.dumps({"success": 0, "result": "", "description": proc.stderr[-300:]})

    # ---------------------------------------------------------------- AWS's side of condor_annex -setup
    def _stage_annex_setup_files(self) -> None:
        """Where -setup's CloudFormation stacks find their templates and Lambda code on AWS."""
        s3 = self.client("s3")
        self.client("s3", "us-east-1").create_bucket(Bucket="condor-annex")
        regional = f"condor-annex-{self.region}"
        s3.create_bucket(Bucket=regional, CreateBucketConfiguration={"LocationConstraint": self.region})
        for name in ("bucket", "template", "role", "security-group"):
            s3.put_object(Bucket="condor-annex", Key=f"{name}-{SETUP_VERSION}.json",
                          Body=(SETUP_FILES / f"{name}-{SETUP_VERSION}.json").read_bytes())
        for source in ("sfr-lease.js", "odi-lease.js", "check-connectivity.py"):
            packed = io.BytesIO()
            with zipfile.ZipFile(packed, "w") as z:
                z.write(SETUP_FILES / source, source)
            stem = source.rsplit(".", 1)[0]
            s3.put_object(Bucket=regional, Key=f"{stem}-{SETUP_VERSION}.zip", Body=packed.getvalue())
