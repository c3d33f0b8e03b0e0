"""Running an experiment: its grid, the run folder, agents, segments, baselines and live summaries.

``specbed run`` runs every point of a profile's grid; ``specbed local`` and
``serve`` run a one-point grid (``grid.single_point``) with the same code
and write the same folder (``folder``).  Modules, bottom up:

``grid``       schemes and grid points (``expand_grid``, ``single_point``)
``prompts``    prompt token ids and generated text
``folder``     the run folder's files (manifest, JSONL appenders, resume)
``agents``     local agent processes, readiness, the controller's own telemetry
``summary``    a distributed point's live figures and per-host energy
``baselines``  the in-process schemes (target-only, colocated)
``segment``    one start or resume of a run
``runner``     ``run_experiment``
"""

from controller.experiment.folder import Appender, Progress
from controller.experiment.grid import DISTRIBUTED, SCHEME_FIELDS, SCHEMES, GridPoint, RunError, expand_grid
from controller.experiment.runner import run_experiment

__all__ = [
    "DISTRIBUTED",
    "SCHEMES",
    "SCHEME_FIELDS",
    "Appender",
    "GridPoint",
    "Progress",
    "RunError",
    "expand_grid",
    "run_experiment",
]
