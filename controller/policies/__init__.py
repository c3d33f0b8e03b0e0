"""Draft-length and bandwidth policies: the models of ALGORITHMS.md sections 4 and 5.

Words and units, fixed once:

``alpha``      per-token acceptance probability (i.i.d. model), in [0, 1)
``t_draft``    drafting time per token on the device, seconds
``bits``       uplink bits per draft token (payload framing included)
``header``     uplink bits per round independent of γ
``rate``       uplink rate, bit/s; under FDMA rate_u = B_u · η_u
``eta``        spectral efficiency of a device's channel, bit/s/Hz (log2(1 + SNR))
``t_verify``   server time to verify one round (a function of γ and batch size)
``t_down``     downlink time of a verdict, seconds; on the testbed, every per-round
               second the model does not break out (see ``Estimates``)

Expected tokens per round E(γ) = (1 − α^{γ+1}) / (1 − α) (accepted drafts plus
the recovered or bonus token).  Goodput is expected tokens per second.

The package holds one part each: ``goodput`` (one device on one link),
``multispin`` (many devices sharing a band), ``estimates`` (the online
estimates), ``draft_length`` (the draft-length policies and their registry)
and ``band`` (the testbed's band allocator); this module hands their names on.
"""

from controller.policies.band import BandAllocator
from controller.policies.draft_length import (
    POLICIES,
    Decision,
    DraftPolicy,
    FixedGamma,
    TkSlt,
    policy_class,
    register_policy,
)
from controller.policies.estimates import Ema, Estimates, RunningMedian, fit_verify
from controller.policies.goodput import LinkModel, expected_tokens, optimal_gamma, snr_to_eta
from controller.policies.multispin import (
    Allocation,
    Device,
    VerifyTime,
    best_gamma_for,
    equal_split,
    equalise,
    heterogeneous_device_goodput,
    homogeneous_goodput,
    multispin_heterogeneous,
    multispin_homogeneous,
)

__all__ = [
    "POLICIES",
    "Allocation",
    "BandAllocator",
    "Decision",
    "Device",
    "DraftPolicy",
    "Ema",
    "Estimates",
    "FixedGamma",
    "LinkModel",
    "RunningMedian",
    "TkSlt",
    "VerifyTime",
    "best_gamma_for",
    "equal_split",
    "equalise",
    "expected_tokens",
    "fit_verify",
    "heterogeneous_device_goodput",
    "homogeneous_goodput",
    "multispin_heterogeneous",
    "multispin_homogeneous",
    "optimal_gamma",
    "policy_class",
    "register_policy",
    "snr_to_eta",
]
