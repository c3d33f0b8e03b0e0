"""specbed's edge agent: wire protocol, drafter and runtime (no controller imports)."""

__version__ = "0.1.0"
