"""A copy that fails at once must not be mistaken for an earlier run's removed copy (which once made
a second copy and left the first behind). The emulator cannot fail a copy, so the test marks it
failed on creation (test set-up, like SlowCopies); mocked: image block public access, deprecation."""
from __future__ import annotations

import time

import pytest

from condor_seed.aws.publish import PublishError, publish_ami

from publish_helpers import make_seed, write_manifest


def test_a_copy_failing_at_once_is_removed_and_not_copied_twice(emulated, tmp_path, monkeypatch):
    from moto.ec2.models.amis import AmiBackend

    original = AmiBackend.copy_image

    def failing_copy(backend_self, *args, **kwargs):
        ami = original(backend_self, *args, **kwargs)
        ami.state = "failed"
        ami.state_reason = {"Code": "Client.CopyFailed", "Message": "injected: the copy failed at once"}
        return ami

    monkeypatch.setattr(AmiBackend, "copy_image", failing_copy)
    source = make_seed(emulated.setup)
    path = write_manifest(tmp_path, source, build_time=int(time.time()))
    with pytest.raises(PublishError, match="failed in us-east-2"):
        publish_ami(emulated.aws, manifest=path, poll_interval=0.01)
    for region in ("us-east-2", "us-west-2"):
        assert len(emulated.ops(region, "CopyImage")) == 1, region
        assert emulated.setup.ec2(region).describe_images(Owners=["self"])["Images"] == [], region
