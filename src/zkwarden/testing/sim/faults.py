"""Network faults for the simulation, planned per frame.

Every connect attempt and every frame, in both directions, gets the next index of one
counter for the whole run. A :class:`FaultPlan` maps indexes to a :class:`Fault`; the
network applies the fault when that frame (or connect) comes by.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ("FaultKind", "Fault", "FaultPlan", "DATA_FAULTS", "CONNECT_FAULTS")


class FaultKind(enum.Enum):
    """What happens to one frame (or connect attempt)."""

    DELIVER = "deliver"  # nothing: delivered after the normal latency
    DELAY = "delay"  # this frame and the ones behind it arrive ``seconds`` late
    HOLD = "hold"  # held until the other direction carries a frame (or ``seconds``)
    RESET = "reset"  # the connection is aborted on both sides; the frame is lost
    REFUSE = "refuse"  # reset, and connects are refused for ``seconds``
    TRUNCATE = "truncate"  # half of the frame arrives, then the sender closes
    CORRUPT = "corrupt"  # the body (not the header) no longer decodes
    DROP = "drop"  # blackhole this direction from here on; connects hang ``seconds``
    ACCEPT_CLOSE = "accept_close"  # connect accepted then closed; on a frame: closed


#: The kinds the exhaustive sweep injects at a data frame / at a connect attempt (the
#: others are equivalent there: a truncated connect is an accept-then-close).
DATA_FAULTS = (
    FaultKind.DELAY, FaultKind.HOLD, FaultKind.RESET, FaultKind.REFUSE, FaultKind.TRUNCATE,
    FaultKind.CORRUPT, FaultKind.DROP, FaultKind.ACCEPT_CLOSE,
)
CONNECT_FAULTS = (FaultKind.DELAY, FaultKind.REFUSE, FaultKind.DROP, FaultKind.ACCEPT_CLOSE)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    #: DELAY: extra latency; HOLD: longest hold; REFUSE/DROP: length of the outage.
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind.value}({self.seconds:g}s)" if self.seconds else self.kind.value


@dataclass
class FaultPlan:
    """Faults by frame index. ``add`` may be called while the run goes on."""

    at: dict[int, Fault] = field(default_factory=dict)

    def add(self, index: int, fault: Fault) -> None:
        self.at[index] = fault

    def take(self, index: int) -> Fault | None:
        return self.at.pop(index, None)

    def __bool__(self) -> bool:
        return bool(self.at)
