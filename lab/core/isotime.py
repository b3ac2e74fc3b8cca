"""ISO-8601 stamps -> epoch seconds: the one parser of the lab's wall-clock times.

Why one: a runner's `finished_at` and an external meter's log rows are aligned by wall clock
(lab/telemetry/session.py, lab/telemetry/meter_import.py); read two ways (a 'Z', a naive stamp
taken as local time) they would drift apart by a time zone. Here 'Z' and a stamp without an
offset are both UTC, the convention of the runners' stamps.
"""
from __future__ import annotations

from datetime import datetime, timezone


def iso_to_epoch(text: str) -> float:
    """Epoch seconds of an ISO-8601 stamp ('Z' or no offset = UTC); ValueError when it is not one."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def iso_epoch(text) -> tuple[float, bool] | None:
    """(epoch seconds, has sub-second digits) of an ISO-8601 UTC stamp, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        epoch = iso_to_epoch(text)
    except ValueError:
        return None
    return epoch, "." in text.strip().split("T")[-1]
