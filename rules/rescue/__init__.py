"""Trapped-passenger rescues (困梯救援, domain.md §4.4): the record, its steps and the KPIs.

* :mod:`semon.rules.rescue.service` — opening a rescue when a trapped-passenger alarm is raised,
  and the firm's steps ``dispatched`` → ``arrived`` → ``released`` (96333 tier, cause, the
  30-minute arrival limit);
* :mod:`semon.rules.rescue.kpis` — mean / p90 times, 3-min response and 30-min arrival rates,
  entrapments per 10,000 elevators per day and causes, by firm, district and period (pandas).
"""

from semon.rules.rescue.kpis import KpiQuery, compute, rescue_kpis
from semon.rules.rescue.service import (
    TIERS,
    RescueCauseInvalid,
    RescueConflict,
    RescueTimeInvalid,
    Step,
    open_rescue,
    record_step,
    rescue_causes,
)

__all__ = [
    "TIERS",
    "KpiQuery",
    "RescueCauseInvalid",
    "RescueConflict",
    "RescueTimeInvalid",
    "Step",
    "compute",
    "open_rescue",
    "record_step",
    "rescue_causes",
    "rescue_kpis",
]
