"""Fleet simulator: elevators and pressure vessels publishing contract-v1 status over MQTT.

Modules: ``elevator`` / ``vessel`` (device models), ``fleet`` (seeded registry and CSV),
``faults`` (fault specs and types), ``truth`` (ground truth), ``engine`` (stepping and
publishing policy, no I/O), ``publisher`` (paho client), ``run`` (``run_simulation`` and CLI).
"""
