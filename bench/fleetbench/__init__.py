"""Building blocks of bench/run.py (the fleet-scale benchmark harness)."""
