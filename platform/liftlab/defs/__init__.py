"""Dagster definitions, one module per layer; loaded by ``liftlab.definitions``."""
