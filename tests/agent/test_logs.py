"""Agent log lines: one line per event, text or JSON, and the per-key rate limit."""

from __future__ import annotations

import io
import json
import logging

from zkwarden.agent.logs import EventLog, JSONFormatter, TextFormatter


def _record(msg: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("zkwarden.agent", logging.WARNING, __file__, 1, msg, None, None)
    record.event = "check_failed"
    record.fields = fields
    return record


def test_json_and_text_lines() -> None:
    record = _record("check of web/1 failed\nsecond line", service="web", id="1", n=3)
    doc = json.loads(JSONFormatter().format(record))
    assert doc["event"] == "check_failed" and doc["level"] == "warning"
    assert doc["msg"] == "check of web/1 failed\nsecond line"
    assert (doc["service"], doc["id"], doc["n"]) == ("web", "1", 3)
    text = TextFormatter().format(record)
    assert "\n" not in text
    assert " WARNING zkwarden.agent check_failed " in text
    assert "service=web id=1 n=3" in text
    plain = logging.LogRecord("zkwarden.client", logging.INFO, __file__, 1, "x %s", ("y",), None)
    assert json.loads(JSONFormatter().format(plain))["event"] == "log"
    assert TextFormatter().format(plain).endswith('log msg="x y"')


def test_rate_limit_per_key_doubles_and_counts() -> None:
    now = [0.0]
    stream = io.StringIO()
    logger = logging.getLogger("zkwarden.agent.test-ratelimit")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    events = EventLog(logger, interval=1.0, max_interval=8.0, clock=lambda: now[0])
    written = []
    for step in range(400):  # 40 s of a condition firing every 100 ms
        now[0] = step * 0.1
        if events.limited("zk", logging.WARNING, "zookeeper_unreachable", "down"):
            written.append(now[0])
        events.limited("other", logging.WARNING, "x", "independent key")
    gaps = [round(b - a, 1) for a, b in zip(written, written[1:], strict=False)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0] and max(gaps) == 8.0
    assert len(written) < 12
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[1]["event"] == "x"  # the other key is not held back by the first
    held = [d.get("suppressed", 0) for d in lines if d["event"] == "zookeeper_unreachable"]
    pending = events._held.get("zk", 0)  # held back since the last line
    assert sum(held) + len(held) + pending == 400  # every occurrence written or counted
    events.reset("zk")
    assert events.limited("zk", logging.WARNING, "zookeeper_unreachable", "again")
    logger.removeHandler(handler)
