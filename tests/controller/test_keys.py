"""`specbed keys`, the agent's key options, and prompts refused before anything starts."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import zmq.auth

from controller.keys import Enrolment, KeysError, enrolment_for
from controller.profiles import ProfileError, check_token_ids, load_prompts


def test_keys_command_writes_the_contract_layout(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "keys", "--dir", str(tmp_path / "k"), "--agents", "orin-1,orin-2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    k = tmp_path / "k"
    for path in (k / "controller.key_secret", k / "agents" / "orin-1.key_secret", k / "agents" / "orin-2.key_secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        public, secret = zmq.auth.load_certificate(path)
        assert secret is not None and public == zmq.auth.load_certificate(path.with_suffix(".key"))[0]
    e = Enrolment(k)
    assert e.describe()["enrolled"] == ["orin-1", "orin-2"]
    assert e.agent_args("orin-1")[:2] == ["--key", str(k / "agents" / "orin-1.key_secret")]
    bad = subprocess.run(
        [sys.executable, "-m", "controller.cli", "keys", "--dir", str(k), "--agents", "a;b"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and "a;b" in bad.stderr


def test_remote_runs_need_keys_or_insecure():
    with pytest.raises(KeysError, match="--keys"):
        enrolment_for(None, False, True, [])
    assert enrolment_for(None, True, True, []).describe() == {"mode": "insecure"}


def test_agent_without_keys_refuses_to_start():
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--connect", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 2 and "--insecure" in out.stderr


@pytest.mark.parametrize("ids, what", [("[0, true]", "True"), ("[0, 9223372036854775808]", "9223372036854775808")])
def test_prompt_ids_that_are_no_token_ids_are_refused(tmp_path, ids, what):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt_token_ids": [1]}\n' + f'{{"id": "b", "prompt_token_ids": {ids}}}\n')
    with pytest.raises(ProfileError, match=rf"p.jsonl:2: prompt_token_ids: {what}"):
        load_prompts(str(path))


def test_prompt_ids_outside_the_vocabulary_are_refused_with_file_line_and_size(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt_token_ids": [1]}\n{"id": "b", "prompt_token_ids": [3, 64]}\n')
    prompts = load_prompts(str(path))
    check_token_ids(prompts, 65)
    with pytest.raises(ProfileError, match=r"p.jsonl:2: prompt 'b': token id 64 .* vocabulary of 64 ids"):
        check_token_ids(prompts, 64)


def test_local_refuses_an_out_of_vocabulary_prompt_before_starting(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt_token_ids": [1, 99999999]}\n')
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "local", "--profile", "tiny", "--prompts", str(path)]
        + ["--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "p.jsonl:1: prompt 'a': token id 99999999" in out.stderr
    assert not (tmp_path / "run").exists()
