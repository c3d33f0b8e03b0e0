"""Profiles: YAML files under ``profiles/`` describing what to run.

``profiles/experiments/NAME.yaml`` names a model pair
(``profiles/models/NAME.yaml``), a prompt set (``profiles/prompts/NAME.jsonl``
or any JSONL path, optionally filtered by task), the number of agents, the
generation settings, repetitions and seeds, a sweep (a grid over generation
settings and the number of agents) and the baselines measured in the same
run.  ``profiles/devices/NAME.yaml`` describes a kind of host;
``profiles/testbeds/NAME.yaml`` the hosts of a lab.  Every file is validated
on load; ``ProfileError`` names the file, the field and what was expected.

One module per kind of file or section: ``files`` (where profiles live and
the shared field checks), ``models``, ``prompts``, ``generation`` (with the
sweep), ``links``, ``hosts`` (devices and testbeds) and ``experiment``;
this module hands their names on.
"""

from controller.profiles.loaders.experiment import EXPERIMENT_FIELDS, Experiment, load_experiment
from controller.profiles.loaders.files import PROFILES_DIR
from controller.profiles.loaders.generation import Generation, check_generation, load_generation, load_sweep
from controller.profiles.loaders.hosts import TESTBED_AGENT_FIELDS, Device, Testbed, load_device, load_testbed
from controller.profiles.loaders.links import load_links, read_trace
from controller.profiles.loaders.models import ModelPair, load_model_pair
from controller.profiles.loaders.prompts import PROMPT_FIELDS, Prompt, check_token_ids, load_prompts, select_prompts

__all__ = [
    "EXPERIMENT_FIELDS",
    "PROFILES_DIR",
    "PROMPT_FIELDS",
    "TESTBED_AGENT_FIELDS",
    "Device",
    "Experiment",
    "Generation",
    "ModelPair",
    "Prompt",
    "Testbed",
    "check_generation",
    "check_token_ids",
    "load_device",
    "load_experiment",
    "load_generation",
    "load_links",
    "load_model_pair",
    "load_prompts",
    "load_sweep",
    "load_testbed",
    "read_trace",
    "select_prompts",
]
