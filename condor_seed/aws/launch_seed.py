"""`invoke launch-seed`: start the newest published seed for a scientist, and `--terminate` it again.

What a launch makes, in order, each step undone when a later one fails or the run is interrupted:
an IAM role carrying iam/seed-instance-policy.json and its instance profile (condor_annex uses the
instance's role, so no key is copied onto the seed), a security group (9618 for annex workers, 22
only from the CIDR given), the instance (from the recipe's SSM parameter, IMDS per IMDS_FOR_CONDOR_ANNEX,
the user's key pair). Everything carries the launch id (`condor-seed:build-id`) and
`condor-seed:role=seed`; EC2 resources also carry `condor-seed:expires` until the launch finished, so
`invoke cleanup` removes what a killed launch left, never a running seed. `terminate_seeds` finds
launches by those tags and removes instance, group, profile and role; running it twice is harmless.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Callable

import botocore.exceptions

from ..errors import PreflightError, SeedError
from ..log import reporter
from ..pipeline import Pipeline, Step, sigterm_as_interrupt
from ..recipe import Recipe
from . import instances, seed_network, seed_role
from .build import new_build_id, utcnow
from .catalog import aws_errors, ssm_value
from .lifecycle import InstanceLifecycle, LaunchSpec
from .preflight import identity_and_region
from .session import Aws
from .tags import BUILD_ID_TAG, EXPIRES_TAG, NAME_TAG, RECIPE_TAG, ROLE_TAG, tag_dict, utc_iso
from .waiters import DEFAULT_POLL_INTERVAL, REPORT_EVERY, Poller, describe_image, error_code

# The IMDS decision (README, "IMDS"): HTCondor's EC2 GAHP asks for the role's credentials without a
# token (IMDSv1), so tokens stay optional; a hop limit of 1 still keeps the metadata service out of
# reach of containers and forwarded packets. The seed's own scripts use IMDSv2 regardless.
IMDS_FOR_CONDOR_ANNEX = {"HttpTokens": "optional", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1}
SEED_ROLE = "seed"
DEFAULT_LAUNCH_TIMEOUT = 10 * 60.0


class LaunchFailed(SeedError):
    """The seed instance did not start."""


@dataclass
class LaunchOptions:
    region: str
    ssh_cidr: str | None = None  # validated with seed_network.parse_cidr
    key_name: str | None = None
    collector_cidr: str = seed_network.DEFAULT_COLLECTOR_CIDR
    instance_type: str | None = None
    setup_permissions: bool = True  # False: the role cannot run `condor_annex -setup` (see seed_role)
    poll_interval: float = DEFAULT_POLL_INTERVAL
    timeout: float = DEFAULT_LAUNCH_TIMEOUT
    report_every: float = REPORT_EVERY
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], dt.datetime] = utcnow


def access_options(ssh_cidr: str | None, key_name: str | None, collector_cidr: str | None) -> dict:
    """Validate the network flags before anything else runs (nothing exists yet when they are wrong)."""
    ssh = seed_network.parse_cidr(ssh_cidr, "--ssh-cidr") if ssh_cidr is not None else None
    collector = seed_network.parse_cidr(collector_cidr or seed_network.DEFAULT_COLLECTOR_CIDR, "--collector-cidr")
    if ssh and not key_name:
        raise PreflightError("--ssh-cidr needs --key-name (an EC2 key pair in the region) to log in with")
    if key_name and not ssh:
        raise PreflightError("--key-name without --ssh-cidr: port 22 would stay closed (give --ssh-cidr YOUR.IP/32)")
    return {"ssh_cidr": ssh, "key_name": key_name, "collector_cidr": collector}


@dataclass
class LaunchResult:
    launch_id: str
    region: str
    image_id: str
    instance_id: str
    group_id: str
    instance_profile: str
    public_dns: str
    public_ip: str
    key_name: str | None
    annex_generation: str

    def how_to_use(self) -> list[str]:
        address = self.public_dns or self.public_ip
        lines = []
        if self.key_name and address:
            lines.append(f"log in:  ssh -i {self.key_name}.pem ec2-user@{address}")
        elif address:
            lines.append(f"no SSH: relaunch with --ssh-cidr YOUR.IP/32 --key-name KEY to log in to {address}")
        else:
            lines.append("the instance has no public address: reach it from inside its VPC (ec2-user)")
        if self.annex_generation == "condor_annex":
            lines += ["then, once per AWS account and region (unless launched with --no-setup-permissions):  "
                      "condor_annex -setup",
                      "and add workers:  condor_annex -count 1 -annex-name first-annex"]
        else:
            lines += ["then, once per AWS account and region (unless launched with --no-setup-permissions):  "
                      "htcondor annex setup",
                      "queue jobs for an annex:  htcondor job submit --annex-name first-annex JOB.sub",
                      "and add EC2 workers for them:  htcondor annex create first-annex m4.large@aws-ec2"]
        lines.append(f"remove it:  invoke launch-seed --region {self.region} --terminate --launch-id {self.launch_id}")
        return lines


@dataclass
class SeedLaunch:
    aws: Aws
    recipe: Recipe
    options: LaunchOptions
    report: Callable[[str], None]
    image_id: str = ""
    profile_arn: str = ""
    instance: dict = field(default_factory=dict)

    def __post_init__(self):
        o = self.options
        self.region = o.region
        self.ec2 = self.aws.ec2(o.region)
        self.iam = self.aws.client("iam", o.region)
        self.launch_id = f"seed-{new_build_id(o.now())}"
        self.name = seed_role.name_for(self.launch_id)
        self.poller = Poller(interval=o.poll_interval, timeout=o.timeout, sleep=o.sleep, clock=o.clock,
                             report=self.report, report_every=o.report_every)
        self.life = InstanceLifecycle(
            self.ec2, self.launch_id, role="seed", poller=self.poller, report=self.report, tags=self.tags,
            group_description=f"condor-seed {self.recipe.name} seed: HTCondor for annex workers, SSH from one CIDR",
            group_name=self.name, ingress=seed_network.ingress_rules(o.collector_cidr, o.ssh_cidr))

    instance_id = property(lambda self: self.life.instance_id)

    def tags(self, expiring: bool = True) -> dict[str, str]:
        tags = {NAME_TAG: f"condor-seed {self.recipe.name}", RECIPE_TAG: self.recipe.name, BUILD_ID_TAG: self.launch_id,
                ROLE_TAG: SEED_ROLE, seed_role.REGION_TAG: self.region}
        if expiring:  # `invoke cleanup` may remove it until the launch has finished
            tags[EXPIRES_TAG] = utc_iso(self.options.now() + dt.timedelta(seconds=self.options.timeout + 3600))
        return tags

    # ---------------------------------------------------------------- steps
    def preflight(self) -> None:
        identity = identity_and_region(self.aws, self.region)
        parameter = self.recipe.ssm_parameter()
        image_id = ssm_value(self.aws.ssm(self.region), parameter)
        if not image_id:
            raise PreflightError(f"no published {self.recipe.name} seed in {self.region}: SSM parameter {parameter} "
                                 "does not exist (publish one with `invoke publish-ami`)")
        image = describe_image(self.ec2, image_id)
        if not image or image.get("State") != "available":
            raise PreflightError(f"{parameter} points to {image_id}, which is "
                                 f"{image.get('State') if image else 'not found'} in {self.region}")
        if self.options.key_name:
            try:
                self.ec2.describe_key_pairs(KeyNames=[self.options.key_name])
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "InvalidKeyPair.NotFound":
                    raise
                raise PreflightError(f"--key-name {self.options.key_name}: no such key pair in {self.region}") from None
        self.image_id = image_id
        self.report(f"preflight: account {identity['Account']}, {self.region}, newest seed {image_id} ({parameter})")

    def create_role(self) -> None:
        setup = self.options.setup_permissions
        seed_role.create_role(self.iam, self.name, self.tags(expiring=False), setup=setup)
        self.report(f"IAM role {self.name} (iam/seed-instance-policy.json{'' if setup else ' without Setup…'})")

    def delete_role(self) -> None:
        seed_role.delete_role(self.iam, self.name)

    def create_profile(self) -> None:
        self.profile_arn = seed_role.create_instance_profile(self.iam, self.name, self.tags(expiring=False))
        self.report(f"instance profile {self.name}")

    def delete_profile(self) -> None:
        seed_role.delete_instance_profile(self.iam, self.name)

    def launch_spec(self) -> LaunchSpec:
        return LaunchSpec(image_id=self.image_id, instance_type=self.options.instance_type or self.recipe.instance_type,
                          client_token=f"condor-seed-{self.launch_id}", metadata_options=dict(IMDS_FOR_CONDOR_ANNEX),
                          instance_profile_arn=self.profile_arn, key_name=self.options.key_name)

    def wait_running(self) -> None:
        def probe():
            state, reason = instances.instance_state(self.ec2, self.instance_id)
            if state not in ("pending", "running"):
                raise LaunchFailed(f"seed {self.instance_id} is {state}: {reason}")
            return state == "running", f"instance {state}", state

        self.poller.until(f"seed {self.instance_id} to run", probe)
        self.instance = instances.describe_instance(self.ec2, self.instance_id)

    def keep(self) -> None:
        """A finished launch is no leftover: drop the expiry tag the janitor goes by."""
        volumes = [m["Ebs"]["VolumeId"] for m in self.instance.get("BlockDeviceMappings", []) if "Ebs" in m]
        self.ec2.delete_tags(Resources=[self.instance_id, self.life.group_id, *volumes], Tags=[{"Key": EXPIRES_TAG}])

    def start(self) -> LaunchResult:
        """Role, profile, group, instance; everything undone if any step fails or the run is interrupted."""
        with sigterm_as_interrupt(), aws_errors(f"launch-seed {self.recipe.name} in {self.region}", LaunchFailed):
            Pipeline(report=self.report).run([
                Step("preflight", self.preflight),
                Step("instance role", self.create_role, self.delete_role),
                Step("instance profile", self.create_profile, self.delete_profile),
                *self.life.steps(self.launch_spec, wait=Step("wait for the seed to run", self.wait_running),
                                 while_up=[Step("keep", self.keep)], keep_running=True),
            ])
        return LaunchResult(self.launch_id, self.region, self.image_id, self.instance_id, self.life.group_id,
                            self.name, self.instance.get("PublicDnsName") or "",
                            self.instance.get("PublicIpAddress") or "", self.options.key_name,
                            self.recipe.annex_generation)


def launch_seed(aws: Aws, recipe: Recipe, options: LaunchOptions,
                report: Callable[[str], None] | None = None) -> LaunchResult:
    return SeedLaunch(aws, recipe, options, report or reporter(f"[launch {recipe.name}] ")).start()


# -------------------------------------------------------------------- --terminate
def _seed_filter() -> list[dict]:
    return [{"Name": f"tag:{ROLE_TAG}", "Values": [SEED_ROLE]}]


def find_launches(aws: Aws, region: str) -> set[str]:
    """Launch ids with anything left in `region`: live instances, security groups, roles, profiles."""
    ec2 = aws.ec2(region)
    found = set()
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=_seed_filter() + [{"Name": "instance-state-name", "Values": instances.LIVE_STATES}])
    found |= {tag_dict(i.get("Tags")).get(BUILD_ID_TAG) for p in pages for r in p["Reservations"] for i in r["Instances"]}
    groups = ec2.describe_security_groups(Filters=_seed_filter())["SecurityGroups"]
    found |= {tag_dict(g.get("Tags")).get(BUILD_ID_TAG) for g in groups}
    found |= seed_role.launches_in(aws.client("iam", region), region, BUILD_ID_TAG)
    return {launch for launch in found if launch}


def terminate_seeds(aws: Aws, region: str, launch_id: str | None = None, report: Callable[[str], None] | None = None,
                    poller: Poller | None = None) -> list[str]:
    """Remove the seeds launched in `region` (or only `launch_id`): instance, group, profile, role."""
    report = report or reporter("[launch-seed] ")
    identity_and_region(aws, region)
    ec2, iam = aws.ec2(region), aws.client("iam", region)
    poller = poller or Poller(timeout=900, report=report)
    launches = sorted(find_launches(aws, region))
    if launch_id:
        launches = [launch for launch in launches if launch == launch_id]
    if not launches:
        report(f"no launched seed{' ' + launch_id if launch_id else ''} in {region}: nothing to remove")
        return []
    for launch in launches:
        name = seed_role.name_for(launch)
        with sigterm_as_interrupt(), aws_errors(f"launch-seed --terminate {launch}"):
            ids = instances.terminate_run(ec2, launch, None, poller)
            groups = instances.delete_run_groups(ec2, launch, None, poller)
            seed_role.delete_instance_profile(iam, name)
            seed_role.delete_role(iam, name)
        report(f"removed {launch}: instance(s) {', '.join(ids) or 'none'}, group(s) {', '.join(groups) or 'none'}, "
               f"instance profile and role {name}")
    return launches
