""" "3+2" on-demand elevator maintenance (按需维保): policy, monitoring inputs, planner, reversion,
records, inspection due dates and compliance alarms. See docs/maintenance.md.

Public entry points:

* :func:`load_policy` / :func:`parse_policy` — the versioned TOML policy, validated;
* :func:`plan_frame` — the pure, vectorised planner (a DataFrame in, decisions out);
* :func:`run_planning` — plan from the stores, write decisions and plans, sync compliance
  alarms, write the ``maintenance_plan`` board measurement;
* :func:`install_reversion` — immediate reversion on a collector's alarm transitions;
* :func:`record_visit`, :func:`firm_rates` — maintenance records and per-firm rates;
* :func:`import_facts`, :func:`update_device_facts` — registry facts;
* :func:`inspection_frame` — periodic inspection due dates.
"""

from semon.rules.maintenance.facts import FactsError, import_facts, update_device_facts, update_firm, update_use_unit
from semon.rules.maintenance.inspection import inspection_frame
from semon.rules.maintenance.planner import plan_frame
from semon.rules.maintenance.policy import Policy, PolicyError, default_policy_path, load_policy, parse_policy
from semon.rules.maintenance.records import RecordError, record_visit
from semon.rules.maintenance.reversion import Reversion, ReversionWorker, install_reversion
from semon.rules.maintenance.service import PlanRun, firm_rates, run_planning

__all__ = [
    "FactsError",
    "PlanRun",
    "Policy",
    "PolicyError",
    "RecordError",
    "Reversion",
    "ReversionWorker",
    "default_policy_path",
    "firm_rates",
    "import_facts",
    "inspection_frame",
    "install_reversion",
    "load_policy",
    "parse_policy",
    "plan_frame",
    "record_visit",
    "run_planning",
    "update_device_facts",
    "update_firm",
    "update_use_unit",
]
