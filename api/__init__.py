"""HTTP API of semon: registry, latest/historic telemetry, alarms, dead letters, health, metrics.

Build the application with :func:`semon.api.app.create_app`; run it with
:func:`semon.api.app.serve`.
"""
