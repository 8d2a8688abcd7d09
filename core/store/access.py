"""The data-access layer of multi-tenancy: who may see which rows.

Every query an API request makes goes through an :class:`Access` built for the caller's
:class:`Principal`. A maintenance firm sees the equipment it maintains, an owner (use unit) its
own equipment, the regulator everything. Rows outside the caller's scope do not exist for it:
lookups raise :class:`NotVisible`, which the API turns into 404 — never 403, never data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVarTuple

from sqlalchemy import ColumnElement, Select, select, true
from sqlalchemy.orm import Session

from semon.store.models import Alarm, DeadLetter, Device

_Ts = TypeVarTuple("_Ts")  # the columns of a statement, kept through scoped()

Role = Literal["regulator", "firm", "owner"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a role and, for firms and owners, which one."""

    role: Role
    firm_id: str | None = None
    use_unit_id: str | None = None
    name: str = "anonymous"
    key_id: int | None = None
    user_id: int | None = None  # a person signed in to the console (core/store/users.py)

    @property
    def is_anonymous(self) -> bool:
        """Neither a key nor a user: the open demo, whose caller may name itself as actor."""
        return self.key_id is None and self.user_id is None

    @property
    def is_regulator(self) -> bool:
        """Sees and manages everything."""
        return self.role == "regulator"

    @property
    def can_operate(self) -> bool:
        """May change alarms, rescues and maintenance records (owners only read)."""
        return self.role in ("regulator", "firm")


SYSTEM = Principal("regulator", name="system")


class NotVisible(LookupError):
    """The row does not exist, or not for this caller (the API answers 404 either way)."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key!r} does not exist")
        self.what, self.key = what, key


def device_clause(p: Principal) -> ColumnElement[bool]:
    """Which devices the caller may see."""
    if p.role == "regulator":
        return true()
    if p.role == "firm":
        return Device.firm_id == p.firm_id
    return Device.use_unit_id == p.use_unit_id


def visible_device_ids(p: Principal) -> Select[Any]:
    """A subquery of the device ids in the caller's scope."""
    return select(Device.id).where(device_clause(p))


class Access:
    """Scoped queries for one caller within one session."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.s = session
        self.p = principal

    def scoped(self, stmt: Select[*_Ts], device_id_column: Any) -> Select[*_Ts]:
        """Restrict any statement over a table with a device id column to the caller's devices."""
        if self.p.is_regulator:
            return stmt
        return stmt.where(device_id_column.in_(visible_device_ids(self.p)))

    # -- devices -------------------------------------------------------------------------
    def devices(self) -> Select[Any]:
        """Devices in scope."""
        return select(Device).where(device_clause(self.p))

    def device(self, device_id: str) -> Device:
        """One device in scope, or :class:`NotVisible`."""
        d = self.s.scalar(self.devices().where(Device.id == device_id))
        if d is None:
            raise NotVisible("device", device_id)
        return d

    # -- alarms --------------------------------------------------------------------------
    def alarms(self) -> Select[Any]:
        """Alarms of devices in scope (by the device's current firm, not the one at raising)."""
        return self.scoped(select(Alarm), Alarm.device_id)

    def alarm(self, alarm_id: int) -> Alarm:
        """One alarm in scope, or :class:`NotVisible`."""
        a = self.s.scalar(self.alarms().where(Alarm.id == alarm_id))
        if a is None:
            raise NotVisible("alarm", alarm_id)
        return a

    # -- dead letters ----------------------------------------------------------------------
    def dead_letters(self) -> Select[Any]:
        """Rejected messages of devices in scope; unattributable ones are the regulator's."""
        return self.scoped(select(DeadLetter), DeadLetter.device_id)

    def require_operator(self) -> None:
        """Owners read only: a change by one is refused as if the thing were not there."""
        if not self.p.can_operate:
            raise PermissionError(f"{self.p.role} may not change this")
