"""An agent that answers its draft request with ERROR: the prompt goes to another agent, the run ends.

The faulty agent is an enrolled peer speaking the protocol from the test (real sockets), the third of
the three agents the run waits for before its first prompt (two are agent processes): it
configures, syncs its clock and then fails every prompt it is given.
"""

from __future__ import annotations

import threading

import zmq

from agent.protocol import Bye, Configure, DraftRequest, Error, Hello, Ready, TimePing, TimePong, decode, encode
from agent.security import apply_client
from controller.experiment.agents import spawn_agent
from controller.keys import Enrolment
from controller.local import run_local
from controller.profiles import load_experiment
from tests.conftest import agent_key_args, free_port


def test_an_agent_error_fails_the_prompt_over(tmp_path, tiny_pair, keys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"id": "f{i}", "prompt_token_ids": [0, {2 + i}]}}\n' for i in range(4)))
    experiment = load_experiment("tiny", prompts=str(prompts), max_new_tokens=16)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    result = {}

    def run():
        result["run"] = run_local(
            experiment,
            tmp_path / "run",
            agents=3,
            target=tiny_pair[0],
            bind=endpoint,
            telemetry_port=free_port(),
            keys_dir=keys,
        )

    # the run waits for three agents before its first prompt: agent-0 and agent-1 (agent processes)
    # and the faulty agent-2, so the faulty one is there when the prompts are dealt
    thread = threading.Thread(target=run)
    thread.start()
    agents = [
        spawn_agent(endpoint, name, tmp_path / f"{name}.log", None, agent_key_args(keys, name))
        for name in ("agent-0", "agent-1")
    ]
    enrolment = Enrolment(keys)
    failed = []
    try:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        apply_client(sock, enrolment.client_keys("agent-2"))
        sock.connect(endpoint)
        sock.send(encode(Hello("agent-2", {})))
        while sock.poll(300_000):
            msg = decode(sock.recv())
            if isinstance(msg, Configure):
                sock.send(encode(Ready({"drafter": "fake", "vocab_size": msg.settings["vocab_size"], "load_s": 0.0})))
            elif isinstance(msg, TimePing):
                sock.send(encode(TimePong(msg.seq, msg.t1_ns, msg.t1_ns, msg.t1_ns)))
            elif isinstance(msg, DraftRequest):
                failed.append(msg.prompt_id)
                sock.send(encode(Error("internal", "out of memory", {"request_id": msg.request_id})))
            elif isinstance(msg, Bye):
                break
        sock.close()
    finally:
        thread.join(600)
        enrolment.close()
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
    run = result["run"]
    assert failed, "the faulty agent was never given a prompt"
    assert run.summary["prompts"] == run.summary["prompts_requested"] == 4
    assert run.summary["prompts_failed"] == []
    assert run.summary["errors"]["agent_internal"] == len(failed)
    assert len(set(failed)) == len(failed)  # a prompt is not handed back to the agent that failed it
