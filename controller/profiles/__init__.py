"""Profiles: YAML files under ``profiles/`` describing what to run.

Each kind is a pydantic model (``extra="forbid"``, strict types) that checks
a file's structure and is exported as a JSON Schema (``specbed schema``):

=================  ==========================================  ======================================
kind               file                                        model
=================  ==========================================  ======================================
experiment         ``profiles/experiments/NAME.yaml``          ``experiment.ExperimentProfile``
  generation       its ``generation`` section                  ``experiment.GenerationProfile``
  prompts          its ``prompts`` mapping                     ``experiment.PromptsFilter``
  sweep            its ``sweep`` section                       ``experiment.SweepProfile``
  telemetry        its ``telemetry`` section                   ``experiment.TelemetryProfile``
  devices          its ``devices`` section                     ``experiment.DevicesProfile``
  dtype            its ``dtype`` mapping                       ``experiment.DtypesProfile``
  liveness         its ``liveness`` section                    ``experiment.LivenessProfile``
  links            its ``links`` section                       ``link.LinksProfile``, ``link.LinkProfile``
model pair         ``profiles/models/NAME.yaml``               ``models.ModelPairProfile``
device             ``profiles/devices/NAME.yaml``              ``device.DeviceProfile``
testbed            ``profiles/testbeds/NAME.yaml``             ``testbed.TestbedProfile``
=================  ==========================================  ======================================

``controller.profiles.loaders`` reads a file, validates it with its model,
then applies the rules that span fields or files (a model pair's specs, the
prompts, every grid point of a sweep, a band for a bandwidth policy) and
returns the objects the runner uses.  ``ProfileError`` names the file, the
field and what was expected, with a suggestion for a misspelt name.
"""

from controller.profiles.base import ProfileError
from controller.profiles.experiment import BANDWIDTH_POLICIES, BASELINES, BATCHING_MODES, INDEX_ENCODINGS, SWEEPABLE
from controller.profiles.loaders import (
    EXPERIMENT_FIELDS,
    PROFILES_DIR,
    PROMPT_FIELDS,
    TESTBED_AGENT_FIELDS,
    Device,
    Experiment,
    Generation,
    ModelPair,
    Prompt,
    Testbed,
    check_generation,
    check_token_ids,
    load_device,
    load_experiment,
    load_generation,
    load_links,
    load_model_pair,
    load_prompts,
    load_sweep,
    load_testbed,
    read_trace,
    select_prompts,
)

__all__ = [
    "BANDWIDTH_POLICIES",
    "BASELINES",
    "BATCHING_MODES",
    "EXPERIMENT_FIELDS",
    "INDEX_ENCODINGS",
    "PROFILES_DIR",
    "PROMPT_FIELDS",
    "SWEEPABLE",
    "TESTBED_AGENT_FIELDS",
    "Device",
    "Experiment",
    "Generation",
    "ModelPair",
    "ProfileError",
    "Prompt",
    "Testbed",
    "check_generation",
    "load_device",
    "load_experiment",
    "load_generation",
    "load_links",
    "load_model_pair",
    "load_prompts",
    "load_sweep",
    "load_testbed",
    "check_token_ids",
    "read_trace",
    "select_prompts",
]
