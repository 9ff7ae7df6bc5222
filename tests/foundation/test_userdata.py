"""User data stays within EC2's 16 KB limit; gzip only when needed, deterministic when used."""
import gzip

import pytest

from condor_seed.errors import ValidationError
from condor_seed.recipe import available_recipes, load_recipe
from condor_seed.render import render
from condor_seed.userdata import USER_DATA_LIMIT, encode_user_data


@pytest.mark.parametrize("name", available_recipes())
def test_bake_script_fits(name):
    """Raw when it fits, else gzip (cloud-init unpacks it); either way within the limit and lossless."""
    script = render(load_recipe(name)).bake_script.content
    payload = encode_user_data(script)
    assert len(payload) <= USER_DATA_LIMIT
    raw = payload == script.encode()
    assert raw or gzip.decompress(payload).decode() == script
    assert raw == (len(script.encode()) <= USER_DATA_LIMIT), "gzip only when needed"


def test_large_script_is_gzipped_deterministically():
    script = "#!/bin/bash\n" + "echo condor-seed\n" * 2000  # 34 KB, compresses well
    packed = encode_user_data(script)
    assert len(packed) <= USER_DATA_LIMIT and gzip.decompress(packed).decode() == script
    assert encode_user_data(script) == packed


def test_too_large_even_gzipped_is_refused():
    import os
    script = "#!/bin/bash\n# " + os.urandom(20000).hex() + "\n"
    with pytest.raises(ValidationError, match="over the 16384-byte user data limit"):
        encode_user_data(script)
