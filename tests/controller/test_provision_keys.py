"""`specbed provision/deploy --keys DIR`: the keys folder must hold a key for every agent."""

from __future__ import annotations

import pytest
import zmq.auth

from controller.provision import ProvisionError, ensure_keys


def test_a_keys_folder_missing_an_agents_key_is_refused_with_the_command(tmp_path):
    (tmp_path / "agents").mkdir()
    zmq.auth.create_certificates(str(tmp_path), "controller")
    zmq.auth.create_certificates(str(tmp_path / "agents"), "orin-1")
    assert ensure_keys(tmp_path, ["orin-1"]) == tmp_path.resolve()
    with pytest.raises(
        ProvisionError, match=rf"no key for orin-2: run `specbed keys --dir {tmp_path} --agents orin-2`"
    ):
        ensure_keys(tmp_path, ["orin-1", "orin-2"])
