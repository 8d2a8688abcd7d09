"""A/B runs of the collector: load its modules from ``SEMON_AB_DIR`` instead of the working tree.

    bench/ab/fetch.sh 758ebe3 /tmp/before        # the pipeline modules of a revision
    SEMON_AB_DIR=/tmp/before PYTHONPATH=bench/ab .venv/bin/python bench/run.py …

Python imports ``sitecustomize`` at start-up from the path; every process the harness starts
(collectors, load generator) inherits the environment, so the whole run uses the modules in
``SEMON_AB_DIR`` (the collector's stages, decoder, spool, MQTT client, InfluxDB encoder, CLI — those present).
Without ``SEMON_AB_DIR`` this does nothing.
"""

import importlib.util
import os
import sys

_DIR = os.environ.get("SEMON_AB_DIR")


def _load(name: str, path: str) -> None:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


if _DIR and os.path.isdir(_DIR):
    import semon.ingest
    import semon.store  # noqa: F401

    # Dependencies before their users: each module is bound as it is loaded.
    for _name, _file in (
        ("semon.store.influx", "influx.py"),
        ("semon.ingest.handover", "handover.py"),
        ("semon.ingest.supervision", "supervision.py"),
        ("semon.ingest.spool", "spool.py"),
        ("semon.ingest.telemetry_sink", "telemetry_sink.py"),
        ("semon.ingest.mqtt_client", "mqtt_client.py"),
        ("semon.ingest.decode", "decode.py"),
        ("semon.ingest.source", "source.py"),
        ("semon.ingest.alarm_sink", "alarm_sink.py"),
        ("semon.ingest.pipeline", "pipeline.py"),
        ("semon.ingest.collector", "collector.py"),
        ("semon.cli", "cli.py"),
    ):
        if os.path.exists(os.path.join(_DIR, _file)):
            _load(_name, os.path.join(_DIR, _file))
