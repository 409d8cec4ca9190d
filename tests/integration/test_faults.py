"""Fault injection through the real `Watcher` (what ``focusmon watch`` runs), default timeouts.

The matrix (`fault_matrix.run_matrix`: every fault at once, each on its own stream, beside a
healthy RTSP camera, on real servers) is run once; these tests judge what it saw.
"""

from __future__ import annotations

import math

import pytest

from fault_matrix import (
    DEFAULTS,
    FAULTS,
    FAULTY_FROM_START,
    HEALTHY,
    MISSING,
    NOTICE_LIMIT_S,
    RECOVERABLE,
    SAMPLE_S,
    SETTLE_S,
    MatrixRun,
    run_matrix,
)

pytestmark = [
    pytest.mark.network,
    pytest.mark.timeout(240),
    pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING)),
]


# -- the tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> MatrixRun:
    run = run_matrix(tmp_path_factory.mktemp("faults"))
    for name, outcome in run.outcomes.items():  # shown with -s, and on failure
        print(
            f"{name:8} noticed after {outcome.noticed_s} s, recovered {outcome.recovered_s} s "
            f"after the fault cleared (bound {outcome.recover_limit_s} s)"
        )
    return run


def _transitions(run: MatrixRun, stream: str) -> list[tuple[str, str]]:
    return [(c.previous, c.state) for _, c in run.recorder.events_of(stream)]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_shows_as_no_signal_within_15_s(matrix, fault):
    outcome = matrix.outcomes[fault]
    assert outcome.noticed_s is not None, (matrix.failures, _transitions(matrix, fault))
    assert outcome.noticed_s <= NOTICE_LIMIT_S
    before = matrix.recorder.first_event(fault, -math.inf, lambda c: c.state == "no_signal")
    assert before == outcome.noticed_at  # no false alarm before the fault
    if fault in FAULTY_FROM_START:  # a camera merely starting up is not an alarm
        assert outcome.noticed_s >= DEFAULTS.open_timeout
    # What a scrape sees while the fault lasts: no signal, not up.
    end = outcome.recovered_at or matrix.stopped_at
    during = matrix.recorder.samples_of(fault, outcome.injected_at, end)
    assert any(s.state == "no_signal" and not s.signal_valid for _, s in during)
    assert any(not s.up for _, s in during)


@pytest.mark.parametrize("fault", FAULTS)
def test_no_signal_holds_until_the_fault_clears(matrix, fault):
    """No flapping, and nothing scored from a dead stream (no stale frame revives it)."""
    outcome = matrix.outcomes[fault]
    assert outcome.noticed_at is not None
    end = outcome.cleared_at if outcome.cleared_at is not None else matrix.stopped_at
    held = matrix.recorder.samples_of(fault, outcome.noticed_at + SAMPLE_S, end)
    assert all(s.state == "no_signal" and not s.signal_valid for _, s in held)
    assert len({s.frames_analysed for _, s in held}) <= 1
    into = [t for t, c in matrix.recorder.events_of(fault) if c.state == "no_signal"]
    out = [t for t, c in matrix.recorder.events_of(fault) if c.previous == "no_signal"]
    assert len(into) == 1, _transitions(matrix, fault)  # lost once
    assert len(out) == (fault in RECOVERABLE), _transitions(matrix, fault)  # back once


@pytest.mark.parametrize("fault", RECOVERABLE)
def test_a_cleared_fault_recovers_by_itself(matrix, fault):
    outcome = matrix.outcomes[fault]
    assert outcome.recovered_s is not None, (matrix.failures, _transitions(matrix, fault))
    assert outcome.recovered_s <= outcome.recover_limit_s
    after = matrix.recorder.samples_of(fault, outcome.recovered_at)
    assert after[-1][1].frames_analysed > after[0][1].frames_analysed  # counting again
    assert all(s.state != "no_signal" for _, s in after)
    assert after[-1][1].up and after[-1][1].signal_valid
    # A stream that had worked reconnects; one that never had connects for the first time.
    assert (after[-1][1].reconnects == 0) == (fault in FAULTY_FROM_START)


def test_unreachable_streams_keep_retrying_without_an_error(matrix):
    seen = matrix.recorder.samples_of("http404")
    assert seen and all(s.frames_analysed == 0 and not s.up for _, s in seen)
    warnings = [m for _, m in matrix.recorder.warnings]
    retries = [m for m in warnings if matrix.urls["http404"] in m and "404 Not Found" in m]
    refusals = [m for m in warnings if matrix.urls["refused"] in m and "refused; retry" in m]
    assert len(retries) >= 3 and len(refusals) >= 3  # a few backoff steps within ~10 s
    assert not any(matrix.errors.values()), matrix.errors  # no stream gave up


def test_the_healthy_stream_is_untouched(matrix):
    first = matrix.warm_at  # http404 and refused are faulty from the start, before it
    seen = matrix.recorder.samples_of(HEALTHY, since=first)
    assert len(seen) > 10 * SETTLE_S
    assert all(s.state != "no_signal" and s.up and s.signal_valid for _, s in seen)
    assert seen[-1][1].reconnects == 0
    assert all(state != "no_signal" for _, state in _transitions(matrix, HEALTHY))
    # Frames keep coming during each fault: never as long without one as makes it stalled.
    counted = [(t, s.frames_analysed) for t, s in seen]
    rises = [t for (t, n), (_, m) in zip(counted, counted[1:], strict=False) if m > n]
    assert rises and rises[0] - first < DEFAULTS.stall_after
    assert max(b - a for a, b in zip(rises, rises[1:], strict=False)) < DEFAULTS.stall_after
    assert matrix.stopped_at - rises[-1] < DEFAULTS.stall_after
    for outcome in matrix.outcomes.values():
        start = max(outcome.injected_at, first)
        end = outcome.recovered_at or matrix.stopped_at
        assert matrix.frames(HEALTHY, end) > matrix.frames(HEALTHY, start)


def test_no_thread_or_file_descriptor_is_left_behind(matrix):
    assert matrix.threads[1] == matrix.threads[0]
    assert matrix.fds[1] == matrix.fds[0]
    waiting = [m for _, m in matrix.recorder.warnings if "still waiting on a read" in m]
    assert waiting == []  # every decode thread ended with its stream, none was left
