"""Partitions shared by the layers."""

import dagster as dg

#: One partition per experiment id, registered from the specs (``raw/experiment_specs``).
#: A failing blocking gate halts only its own partition's analysis.
experiment_partitions = dg.DynamicPartitionsDefinition(name="experiment")
