"""Ordering gate: a device's messages in ``seq`` order, its ``ts`` checked against its own clock.

Pure logic (no store, no MQTT): the rule engine asks it about every status and event before a
rule sees the message. One :class:`Stream` per device and channel (status and event messages
count separately, docs/protocol.md).

* **Order is the device's counter**, not its clock: a message is new when its ``seq`` is
  higher than the newest seen. A forged or jumped ``ts`` can therefore never make later
  messages look old (the "one status 290 s in the future blinds the device" hole).
* **Counter reset**: ``seq`` back to a small number (≤ ``RESET_MAX_SEQ``) or far below the
  window, with a ``ts`` newer than the newest seen and a plausible clock, is a reboot — a new
  epoch; it is not a gap, not a duplicate.
* **Clock estimate**: ``ts − arrival`` of a message is the device's clock error minus its
  transport delay, and delay is never negative — so the largest offset seen recently (the
  last 5–10 min, two ``CLOCK_BUCKET_MS`` buckets) estimates the clock error from below; a
  backlog (collector or broker down) only lowers offsets and never pulls the estimate down
  within the horizon. A message more than ``JUMP_MS`` ahead of that estimate is a **clock jump**:
  counted, flagged, and evaluated at the estimated device time (arrival + estimate) instead
  of its own ``ts``. ``REANCHOR`` jumps in a row that agree with each other mean the device's
  clock was really set forward (NTP after boot): the estimate moves to the new clock.
* **Late messages**: a ``seq`` below the newest that has not arrived yet fills a gap. If its
  ``ts`` is at most ``REORDER_MS`` behind the newest, the engine still counts it for edge and
  window (repetition) rules; older late ones are stored but evaluated by no rule. Nothing is
  held back: every new message is evaluated at once, so critical rules get no delay at all.
* **Gaps**: a bitmask remembers which of the ``WINDOW`` seqs below the newest arrived. A seq
  that leaves the window without arriving is **lost** (counted for good); one still inside it
  is an **open** gap that a late arrival can fill. Memory per stream is a few integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

JUMP_MS = 60_000  # ts this far ahead of the device's own clock estimate is a jump (default)
JUMP_OFF = 1 << 62  # as jump_ms: no jump check (accelerated simulations run device time fast)
CLOCK_BUCKET_MS = 300_000  # the estimate is the largest offset of the current and last bucket
REANCHOR = 3  # consecutive jumps agreeing within JUMP_MS: the device's clock really moved
REORDER_MS = 3_000  # a late message this close to the newest still counts for edge/window rules
WINDOW = 256  # seqs below the newest remembered: duplicates, late fills, open gaps
RESET_MAX_SEQ = 16  # a reboot restarts the counter at 0 or 1; a few messages may precede ours
MAX_SEQ_STEP = 100_000  # a forward step beyond this is a counter discontinuity, not a loss
_MASK = (1 << WINDOW) - 1
_NONE = -(1 << 62)  # "no offset seen" (below any real offset)


class Order(IntEnum):
    """What a message is, relative to what its stream already holds."""

    NEW = 0  # newest seq (or the first of a new epoch): every rule evaluates it
    LATE = 1  # fills a gap, close enough to the newest for edge/window rules
    STALE = 2  # fills a gap, but too old for any rule: stored only
    DUPLICATE = 3  # this seq already arrived (QoS 1 redelivery, a terminal's resend)


@dataclass(slots=True)
class Admission:
    """The gate's verdict on one message: its order, the device time to evaluate it at."""

    order: Order
    ts: int
    jumped: bool = False
    reset: bool = False


@dataclass(slots=True)
class Stream:
    """One device channel: newest seq and ts, which recent seqs arrived, the clock estimate."""

    seq: int = -1
    ts: int = _NONE  # device time the newest message was evaluated at
    seen: int = _MASK  # bit i set: seq − 1 − i arrived (or lies before the epoch)
    lost: int = 0  # seqs that left the window without arriving
    resets: int = 0
    jumps: int = 0
    bucket: int = _NONE
    cur_max: int = _NONE
    prev_max: int = _NONE
    run: int = 0  # consecutive jumps
    run_offset: int = 0  # offset of the first of them
    resume: int = -1  # the seq a previous collector saved, until a message passes it

    @property
    def saved_seq(self) -> int:
        """The seq to save: the newest seen, or the one resumed from while redeliveries replay."""
        return max(self.seq, self.resume)

    @property
    def open_gaps(self) -> int:
        """Seqs below the newest, inside the window, not (yet) arrived."""
        return WINDOW - self.seen.bit_count() if self.seq >= 0 else 0

    @property
    def gaps(self) -> int:
        """Every seq known missing: lost for good plus still open."""
        return self.lost + self.open_gaps

    def estimate(self, wall_ms: int) -> int | None:
        """The device's clock minus ours, from the largest recent offset; None without evidence."""
        k = wall_ms // CLOCK_BUCKET_MS
        if k != self.bucket:
            self.prev_max = self.cur_max if k == self.bucket + 1 else _NONE
            self.cur_max, self.bucket = _NONE, k
        est = max(self.cur_max, self.prev_max)
        return None if est == _NONE else est


@dataclass(slots=True)
class Tally:
    """Counts since the last drain (the collector moves them into Prometheus)."""

    late: int = 0
    stale: int = 0
    duplicate: int = 0
    jumps: int = 0
    resets: int = 0
    missing: int = 0  # seqs skipped by a newer one: gaps as they appear
    filled: int = 0  # of those, arrived late after all (missing − filled is what was lost)


class OrderGate:
    """Streams of every device and channel; :meth:`admit` judges one message."""

    def __init__(self, jump_ms: int = JUMP_MS) -> None:
        self.jump_ms = jump_ms
        self.streams: dict[str, dict[str, Stream]] = {}  # device → channel → stream
        self.tally = Tally()
        self.dirty: set[str] = set()  # devices whose streams moved since the last take_dirty()

    def stream(self, device_id: str, channel: str) -> Stream:
        """The stream of one device channel (created empty)."""
        chans = self.streams.get(device_id)
        if chans is None:
            chans = self.streams[device_id] = {}
        s = chans.get(channel)
        if s is None:
            s = chans[channel] = Stream()
        return s

    def gaps(self, device_id: str) -> int:
        """Seqs of this device known missing, over all its channels."""
        return sum(s.gaps for s in self.streams.get(device_id, {}).values())

    def take_dirty(self) -> set[str]:
        """Devices whose streams moved since the last call."""
        d, self.dirty = self.dirty, set()
        return d

    def restore(self, device_id: str, channel: str, seq: int, ts: int, gaps: int, resets: int, jumps: int) -> None:
        """Resume a stream as saved by a previous collector: what was still open then counts as
        lost. Messages up to ``seq`` that come again (it had not acknowledged them yet) are
        evaluated as new — the rules' state of that process is gone — but are no gap."""
        s = self.stream(device_id, channel)
        s.resume, s.seq, s.ts, s.seen, s.lost, s.resets, s.jumps = seq, -1, ts, _MASK, gaps, resets, jumps

    def drain(self) -> Tally:
        """The counts since the last call, reset."""
        t, self.tally = self.tally, Tally()
        return t

    def admit(self, device_id: str, channel: str, ts: int, seq: int, wall_ms: int) -> Admission:
        """Judge one message of ``device_id`` on ``channel`` arriving at ``wall_ms``."""
        chans = self.streams.get(device_id)
        s = chans.get(channel) if chans is not None else None
        if s is None:
            s = self.stream(device_id, channel)
        self.dirty.add(device_id)
        offset = ts - wall_ms
        if (
            seq == s.seq + 1
            and wall_ms // CLOCK_BUCKET_MS == s.bucket
            and offset <= max(s.cur_max, s.prev_max) + self.jump_ms
            and s.resume < 0
        ):
            # The common case, kept short (it runs for every message): the next seq, on the
            # device's clock, in the current estimate bucket; seq − WINDOW leaves the window.
            if not s.seen >> (WINDOW - 1):
                s.lost += 1
            s.seen = ((s.seen << 1) | 1) & _MASK
            s.seq, s.run = seq, 0
            if ts > s.ts:
                s.ts = ts
            if offset > s.cur_max:
                s.cur_max = offset
            return Admission(Order.NEW, ts)
        est = s.estimate(wall_ms)
        jumped = est is not None and offset > est + self.jump_ms
        if jumped:
            if s.run and abs(offset - s.run_offset) <= self.jump_ms:
                s.run += 1
            else:
                s.run, s.run_offset = 1, offset
            if s.run >= REANCHOR:  # the clock was set forward for real: follow it
                s.cur_max, s.prev_max, s.run, jumped = offset, _NONE, 0, False
        else:
            s.run = 0
        if jumped:
            assert est is not None
            eff = wall_ms + est
            s.jumps += 1
            self.tally.jumps += 1
        else:
            eff = ts
            if offset > s.cur_max:
                s.cur_max = offset
        t = self.tally
        if s.resume >= 0:
            if seq > s.resume:  # past what the previous collector had: gaps count from its end
                s.seq, s.seen, s.resume = s.resume, _MASK, -1
            elif not jumped and ts > s.ts:  # a lower seq with a newer clock: it rebooted meanwhile
                s.resume = -1
                self._new_epoch(s, seq, eff)
                s.resets += 1
                t.resets += 1
                return Admission(Order.NEW, eff, jumped, reset=True)
            elif seq > s.seq:  # a redelivery the previous collector had not acknowledged
                s.seq = seq
                return Admission(Order.NEW, eff, jumped)
            else:
                t.duplicate += 1
                return Admission(Order.DUPLICATE, eff, jumped)
        if s.seq < 0:
            s.seq, s.ts = seq, max(eff, s.ts)
            return Admission(Order.NEW, eff, jumped)
        step = seq - s.seq
        if step > 0:
            if step > MAX_SEQ_STEP:  # garbage or a counter we cannot follow: start over, count no loss
                self._new_epoch(s, seq, eff)
                return Admission(Order.NEW, eff, jumped, reset=True)
            shifted = (s.seen << step) | (1 << (step - 1))
            t.missing += step - 1
            fell = shifted >> WINDOW
            s.lost += step - fell.bit_count()  # the step positions that left the window
            s.seen, s.seq, s.ts = shifted & _MASK, seq, max(eff, s.ts)
            return Admission(Order.NEW, eff, jumped)
        if step == 0:
            t.duplicate += 1
            return Admission(Order.DUPLICATE, eff, jumped)
        if not jumped and ts > s.ts and (seq <= RESET_MAX_SEQ or -step > WINDOW):
            # Counter back near zero (or far back) with a newer, plausible clock: a reboot.
            self._new_epoch(s, seq, eff)
            s.resets += 1
            t.resets += 1
            return Admission(Order.NEW, eff, jumped, reset=True)
        if -step > WINDOW:  # older than the window: already counted lost if it was missing
            t.stale += 1
            return Admission(Order.STALE, eff, jumped)
        bit = 1 << (-step - 1)
        if s.seen & bit:
            t.duplicate += 1
            return Admission(Order.DUPLICATE, eff, jumped)
        s.seen |= bit  # a late arrival fills its gap: not a loss
        t.filled += 1
        if s.ts - eff <= REORDER_MS:
            t.late += 1
            return Admission(Order.LATE, eff, jumped)
        t.stale += 1
        return Admission(Order.STALE, eff, jumped)

    def _new_epoch(self, s: Stream, seq: int, eff: int) -> None:
        """Start counting afresh: what was still missing of the old epoch is lost for good."""
        s.lost += s.open_gaps
        s.seq, s.ts, s.seen = seq, eff, _MASK
