"""Fleet simulator: elevators and pressure vessels publishing contract-v1 status over MQTT.

Modules: ``elevator`` / ``vessel`` (device models and their fault behaviours), ``fleet``
(seeded registry and CSV), ``faults`` (fault specs and the catalog of fault types),
``scenario`` (seeded mixed scenarios), ``truth`` (ground truth), ``engine`` (stepping and
publishing policy, no I/O; ``FleetEngine.iter_messages`` is the in-process fast path),
``publisher`` (paho client), ``run`` (``run_simulation`` and CLI).
"""
