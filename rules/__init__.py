"""Hazard rules: the rule interface, the built-in rules and the engine that runs them."""
