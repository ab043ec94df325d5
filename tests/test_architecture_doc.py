"""docs/architecture.md's copy of the session transition table matches the code."""

from __future__ import annotations

from pathlib import Path

from zkwarden.protocol.session import PUBLIC_STATE, TRANSITIONS, Phase, SessionEvent

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _rows_in_code() -> set[tuple[str, str, str, str]]:
    rows = set()
    for (phase, event), (nxt, report) in TRANSITIONS.items():
        if phase in (Phase.CLOSING, Phase.CLOSED) and nxt is phase:
            continue  # "closing and closed absorb every other event"
        if event is SessionEvent.CLOSE:
            assert nxt is Phase.CLOSING and not report
            continue  # "close takes every phase to closing"
        state = PUBLIC_STATE[nxt]
        rows.add((phase.value, event.value, nxt.value,
                  state.value.upper() if report and state is not None else ""))
    return rows


def _rows_in_doc() -> set[tuple[str, str, str, str]]:
    rows = set()
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in {p.value for p in Phase}:
            rows.add((cells[0], cells[1], cells[2], cells[3]))
    return rows


def test_documented_table_is_the_code() -> None:
    assert _rows_in_doc() == _rows_in_code()


def test_every_phase_closes() -> None:
    for phase in Phase:
        if phase not in (Phase.CLOSING, Phase.CLOSED):
            assert TRANSITIONS[(phase, SessionEvent.CLOSE)] == (Phase.CLOSING, False)
