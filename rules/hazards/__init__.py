"""Hidden hazards (隐患) and risk grading: the regulator's "dual prevention" (docs/hazards.md).

Pure logic lives in :mod:`.catalog` (the hazard list as data), :mod:`.risk` (a risk grade per
device), :mod:`.draw` (the risk-weighted inspection draw) and :mod:`.indicators` (the plan's
indicators); :mod:`.service` keeps the records and their lifecycle in the database.
"""
