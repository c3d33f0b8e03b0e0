"""Draft-length policies: the registry of classes that choose γ for a device's next round."""

from __future__ import annotations

from dataclasses import dataclass

from controller.policies.estimates import Estimates
from controller.policies.goodput import optimal_gamma


@dataclass
class Decision:
    """A policy's choice for a device's next round, with the model's prediction when it has one."""

    gamma: int
    predicted_goodput: float | None = None  # tokens/s the model expects at this γ


class DraftPolicy:
    """Chooses γ for a device's next round from its estimates.  Subclass and register to add one."""

    name = "base"

    def __init__(self, gamma: int, gamma_max: int = 16) -> None:
        self.gamma = gamma
        self.gamma_max = gamma_max

    def decide(self, est: Estimates) -> Decision:
        raise NotImplementedError


class FixedGamma(DraftPolicy):
    """Always the profile's γ; predicts its goodput from the same model, for comparison."""

    name = "fixed"

    def decide(self, est: Estimates) -> Decision:
        model = est.link_model()
        return Decision(self.gamma, model.goodput(self.gamma) if model else None)


class TkSlt(DraftPolicy):
    """TK-SLT: γ* = argmax E(γ)/T(γ) over 1..γ_max with the current estimates (profile γ until there are any)."""

    name = "tkslt"

    def __init__(self, gamma: int, gamma_max: int = 16, warmup_rounds: int = 2) -> None:
        super().__init__(gamma, gamma_max)
        self.warmup_rounds = warmup_rounds

    def decide(self, est: Estimates) -> Decision:
        model = est.link_model()
        if model is None or est.rounds < self.warmup_rounds:
            return Decision(self.gamma, model.goodput(self.gamma) if model else None)
        gamma, goodput = optimal_gamma(model, self.gamma_max)
        return Decision(gamma, goodput)


POLICIES: dict[str, type[DraftPolicy]] = {"fixed": FixedGamma, "tkslt": TkSlt}


def register_policy(name: str, cls: type[DraftPolicy]) -> None:
    """Make ``draft_policy: NAME`` usable in profiles."""
    if not (isinstance(cls, type) and issubclass(cls, DraftPolicy)):
        raise TypeError(f"{cls!r} is not a DraftPolicy subclass")
    POLICIES[name] = cls


def policy_class(name: str) -> type[DraftPolicy]:
    """A registered name, or ``package.module:Class`` (imported, then registered under that name)."""
    if name in POLICIES:
        return POLICIES[name]
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"draft policy {name!r}: {exc}") from None
        register_policy(name, cls)
        return cls
    raise ValueError(f"unknown draft policy {name!r}; registered: {', '.join(sorted(POLICIES))}, or module:Class")
