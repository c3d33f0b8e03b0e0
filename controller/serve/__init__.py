"""The controller in pieces of one concept each (a package so they sit together and import downward only).

``router`` → ``sessions`` → ``batching`` → ``rounds`` → ``controller``; ``jobs`` holds the prompts they serve.
"""

from controller.serve.controller import Controller
from controller.serve.jobs import Job, eos_token_ids, job_seed

__all__ = ["Controller", "Job", "eos_token_ids", "job_seed"]
