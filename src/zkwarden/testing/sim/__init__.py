"""Deterministic simulation: the real client, an in-memory network, a model server.

Use it to test code built on zkwarden against faults at every frame, on virtual time::

    from zkwarden.testing.sim import (
        VirtualTimeLoop, run_virtual, SimNetwork, ModelServer, FaultPlan, Fault, FaultKind)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = ModelServer(loop)
        net = SimNetwork(loop, server, FaultPlan({7: Fault(FaultKind.RESET)}))
        with net.installed():
            async with AsyncClient("127.0.0.1:1", session_timeout=3.0) as zk:
                ...

    run_virtual(main())

Nothing here sleeps real time; a run is deterministic for a given plan (see
:func:`seeded_randomness` for the client's own jitter).
"""

from __future__ import annotations

from .faults import CONNECT_FAULTS, DATA_FAULTS, Fault, FaultKind, FaultPlan
from .loop import SimDeadlockError, VirtualTimeLoop, run_virtual, seeded_randomness
from .network import SimConnection, SimNetwork, SimTransport
from .server import ModelServer, Node, Session

__all__ = (
    "CONNECT_FAULTS",
    "DATA_FAULTS",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "ModelServer",
    "Node",
    "Session",
    "SimConnection",
    "SimDeadlockError",
    "SimNetwork",
    "SimTransport",
    "VirtualTimeLoop",
    "run_virtual",
    "seeded_randomness",
)
