"""Per-device message counters as the collector last saw them: newest ``seq`` and ``ts`` per
channel, and how many of the device's seqs never arrived (docs/protocol.md, "Gaps").

The collector saves a device's row with the batch that carried its messages — before their
PUBACKs leave — so a restarted collector picks up exactly where the acknowledged stream ended:
what the broker dropped meanwhile shows as a gap, and nothing it acknowledged does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Integer, String, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from semon.store.base import Base
from semon.store.db import Database


class DeviceSeq(Base):
    """One device channel's counter state."""

    __tablename__ = "device_seq"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger, doc="device ms of the newest message")
    gaps: Mapped[int] = mapped_column(Integer, default=0, doc="seqs known missing (lost or not yet arrived)")
    resets: Mapped[int] = mapped_column(Integer, default=0, doc="counter resets (reboots) seen")
    jumps: Mapped[int] = mapped_column(Integer, default=0, doc="clock jumps quarantined")
    updated_ms: Mapped[int] = mapped_column(BigInteger, doc="wall ms UTC of the last save")


def save(db: Database, rows: Iterable[dict[str, Any]]) -> None:
    """Insert or update rows (columns of :class:`DeviceSeq`) in one statement."""
    rows = list(rows)
    if not rows:
        return
    dialect = db.engine.dialect.name
    mod: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = mod.insert(DeviceSeq).values(rows)
    cols = ("seq", "ts", "gaps", "resets", "jumps", "updated_ms")
    stmt = stmt.on_conflict_do_update(index_elements=["device_id", "channel"], set_={c: stmt.excluded[c] for c in cols})
    with db.session() as s:
        s.execute(stmt)


def load(db: Database) -> list[DeviceSeq]:
    """Every saved row."""
    with db.session() as s:
        return list(s.scalars(select(DeviceSeq)))


def gaps_by_device(s: Session, device_ids: Iterable[str]) -> dict[str, int]:
    """Seqs known missing per device (all channels); devices never heard from are left out."""
    ids = list(device_ids)
    if not ids:
        return {}
    q = select(DeviceSeq.device_id, func.sum(DeviceSeq.gaps)).where(DeviceSeq.device_id.in_(ids))
    return {d: int(n or 0) for d, n in s.execute(q.group_by(DeviceSeq.device_id))}
