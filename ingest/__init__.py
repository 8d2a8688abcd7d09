"""Collectors: MQTT in, validation, dead letters, durable telemetry writes, rule evaluation."""
