"""Lost messages are seen: per-device seq gaps saved with each batch, and the platform alarm
``message_loss`` while some device lost ``SEMON_SEQ_GAP_ALARM_COUNT`` messages or more within
``SEMON_SEQ_GAP_ALARM_WINDOW_S``.

Runs on the pipeline's thread, over the ordering gate's streams (``rules/ordering.py``); the
rows and the alarm's transitions go to the alarm sink like every other record, so a batch's
PUBACKs wait until its devices' counters are durable (``semon.store.seq_state``).

Not in a share group (``SEMON_MQTT_SHARE_GROUP``): the broker deals each device's messages out
to several collectors in turn, so every one of them sees "gaps" that are its peers' messages.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from semon.notify.canary import PLATFORM_DEVICE
from semon.rules.base import AlarmTransition, RuleSpec, Severity
from semon.rules.ordering import OrderGate
from semon.store.seq_state import DeviceSeq

MESSAGE_LOSS = RuleSpec("platform.message_loss", "platform", "message_loss", Severity.major, explain="设备消息丢失")


class GapWatch:
    """Which devices lost too many messages lately; the rows to save for the dirty ones."""

    def __init__(self, gate: OrderGate, count: int, window_s: float, *, enabled: bool = True) -> None:
        self.gate = gate
        self.enabled = enabled
        self.count = count
        self.window_ms = int(window_s * 1000)
        # Gaps of each device when first seen (a baseline: what it had lost before), and for a
        # device whose gaps changed since, (wall ms, gaps) at each change, trimmed to the window;
        # the first entry is the figure at (or before) the window's start.
        self._base: dict[str, int] = {}
        self._history: dict[str, deque[tuple[int, int]]] = {}
        self.over: dict[str, int] = {}  # device → gaps within the window, while ≥ count
        self.active = False  # the platform alarm is raised (restored from the database at start)
        self.onset = 0

    def restore(self, rows: list[DeviceSeq]) -> None:
        """Resume the gate's streams as saved."""
        if not self.enabled:
            return
        for r in rows:
            self.gate.restore(r.device_id, r.channel, r.seq, r.ts, r.gaps, r.resets, r.jumps)

    def rows(self, wall_ms: int) -> list[dict[str, Any]]:
        """Rows of the devices whose streams moved, and their gaps into the alarm's window."""
        out: list[dict[str, Any]] = []
        dirty = self.gate.take_dirty()
        if not self.enabled:
            return out
        for dev in dirty:
            total = 0
            for channel, s in self.gate.streams.get(dev, {}).items():
                g = s.gaps
                total += g
                row = dict(
                    device_id=dev, channel=channel, seq=s.saved_seq, ts=s.ts, gaps=g, resets=s.resets, jumps=s.jumps
                )
                out.append(row | {"updated_ms": wall_ms})
            self._note(dev, total, wall_ms)
        return out

    def _note(self, dev: str, gaps: int, wall_ms: int) -> None:
        h = self._history.get(dev)
        if h is None:
            base = self._base.setdefault(dev, gaps)
            if base == gaps:
                return  # the common case: nothing lost since first seen
            h = self._history[dev] = deque([(0, base)])
        if h[-1][1] != gaps:
            h.append((wall_ms, gaps))
            self._judge(dev, h, wall_ms)

    def _judge(self, dev: str, h: deque[tuple[int, int]], wall_ms: int) -> None:
        horizon = wall_ms - self.window_ms
        while len(h) > 1 and h[1][0] <= horizon:
            h.popleft()
        lost = h[-1][1] - h[0][1]
        if lost >= self.count:
            self.over[dev] = lost
        else:
            self.over.pop(dev, None)

    def check(self, wall_ms: int) -> list[AlarmTransition]:
        """The platform alarm's transition, when it changes (windows also expire with time)."""
        for dev in list(self.over):
            self._judge(dev, self._history[dev], wall_ms)
        if self.over and not self.active:
            self.active, self.onset = True, wall_ms
            worst = sorted(self.over.items(), key=lambda kv: -kv[1])[:10]
            listed = ", ".join(f"{d} ({n})" for d, n in worst)
            msg = (
                f"设备消息丢失 (messages lost): {listed} — ≥ {self.count} messages in "
                f"{self.window_ms // 1000} s never arrived"
            )
            details = {"devices": dict(worst), "threshold": self.count, "window_s": self.window_ms // 1000}
            return [_transition("raised", wall_ms, wall_ms, msg, details)]
        if not self.over and self.active:
            self.active = False
            return [_transition("cleared", self.onset, wall_ms, "", {})]
        return []


def _transition(event: str, onset: int, ts: int, msg: str, details: dict[str, Any]) -> AlarmTransition:
    return AlarmTransition(event, MESSAGE_LOSS, PLATFORM_DEVICE, onset, ts, msg, details, MESSAGE_LOSS.severity)
