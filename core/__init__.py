"""semon — monitoring platform for special equipment (elevators, pressure vessels).

The distribution has one import namespace: ``semon`` (this folder, ``core/``: configuration,
message contract, stores, CLI) with ``semon.ingest``, ``semon.rules``, ``semon.api`` and
``semon.simulators`` mapped from the repository's top-level folders.
"""

__version__ = "0.1.0"
