"""The phases of a round, in order: where a round record's time went, on the controller's clock."""

#: Phases of a round, in order.  ``reply`` runs from the verdict being ready to
#: its receipt by the agent, and ``rollback`` is the agent applying it; both
#: belong to the previous round and arrive with this round's payload.
#: ``batch_wait`` is a decoded payload waiting for the others of its batch.
#: ``queue`` is a payload that had arrived waiting for the controller to finish
#: other agents' work before reading it (never counted as ``uplink``).
PHASES = (
    "drafting",
    "packing",
    "uplink",
    "queue",
    "decode",
    "batch_wait",
    "target_forward",
    "verification",
    "reply",
    "rollback",
)
AGENT_PHASES = ("drafting", "packing", "rollback")
CONTROLLER_PHASES = ("decode", "batch_wait", "target_forward", "verification")
