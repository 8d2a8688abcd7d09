""" "3+2" on-demand elevator maintenance (按需维保): policy, monitoring inputs, planner, reversion,
records, inspection due dates and compliance alarms. See docs/maintenance.md.

Entry points, each imported from its module (the package imports nothing, so loading the
pure policy or planner does not load the store):

* :func:`load_policy` / :func:`parse_policy` — the versioned TOML policy, validated;
* :func:`plan_frame` — the pure, vectorised planner (a DataFrame in, decisions out);
* :func:`run_planning` — plan from the stores, write decisions and plans, sync compliance
  alarms, write the ``maintenance_plan`` board measurement;
* :func:`install_reversion` — immediate reversion on a collector's alarm transitions;
* :func:`record_visit`, :func:`firm_rates` — maintenance records and per-firm rates;
* :func:`import_facts`, :func:`update_device_facts` — registry facts;
* :func:`inspection_frame` — periodic inspection due dates.
"""
