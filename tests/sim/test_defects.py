"""The issue 11 defects the simulation finds on the code before the fixes (commit 820cbaf),
kept as named cases. Each asserts the invariant the defect broke: every one of them fails
on that commit and passes on the fixed client; they must not be weakened.

Defects 9 and 10 live in the blocking facade (threads, a real loop) and 11 in
``close_session_blocking`` (a real socket): out of the simulation's reach on the old code.
"""

from __future__ import annotations

from zkwarden.testing.sim import FaultKind

from ._harness import Outcome, describe
from .sweep import run_case


def _check(outcome: Outcome, case: str) -> None:
    assert outcome.ok, describe(outcome, case)


def test_defect_1_body_corruption_hangs_call() -> None:
    # frame 4 is the reply to create /e: header intact, body undecodable
    _check(run_case("basic", FaultKind.CORRUPT, 4), "basic/corrupt/4")


def test_defect_2_cancelled_close_reaches_closed() -> None:
    _check(run_case("cancelled_close", None, 0), "cancelled_close (no fault)")


def test_defect_3_calls_after_presumed_loss_raise_only_zkwarden_errors() -> None:
    _check(run_case("calls_during_presumed_loss", FaultKind.DELAY, 24),
           "calls_during_presumed_loss/delay/24")


def test_defect_4_stream_created_after_lost_survives_the_new_session() -> None:
    _check(run_case("stream_after_lost", None, 0), "stream_after_lost (no fault)")


def test_defect_5_exists_watch_no_spurious_created_after_reconnect() -> None:
    _check(run_case("exists_watch_reconnect", None, 0), "exists_watch_reconnect (no fault)")


def test_defect_6_new_session_flag_survives_a_drop_during_set_up() -> None:
    # frame 14 is the auth reply on the new session's first connection: the old code
    # reported SUSPENDED(new id) after LOST, then CONNECTED(new id, new_session=False)
    _check(run_case("new_session_setup_drop", FaultKind.RESET, 14),
           "new_session_setup_drop/reset/14")


def test_defect_7_slow_persistent_consumer_is_bounded() -> None:
    _check(run_case("slow_persistent_consumer", None, 0), "slow_persistent_consumer (no fault)")


def test_defect_8_watch_after_noauth_does_not_hang() -> None:
    _check(run_case("watch_noauth", None, 0), "watch_noauth (no fault)")


def test_found_state_reported_after_expiry_during_restore() -> None:
    # Not in the list: a resume whose restore is cut by the session's expiry
    # reports CONNECTED->SUSPENDED while the application last heard SUSPENDED.
    _check(run_case("expiry_during_restore", None, 0), "expiry_during_restore (no fault)")
