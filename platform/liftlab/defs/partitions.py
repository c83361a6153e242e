"""Partitions shared by the layers."""

import dagster as dg

from liftlab import config

#: One partition per experiment id, registered from the specs (``raw/experiment_specs``).
#: A failing blocking gate halts only its own partition's analysis.
experiment_partitions = dg.DynamicPartitionsDefinition(name="experiment")

#: One partition per UTC day, today included (``end_offset=1``: a running experiment's cohort of
#: today is analysed today). A day partition holds the sufficient statistics of the units first
#: exposed that day, for every experiment on the event stream: independent of every other day,
#: so days can be computed in parallel runs (or machines) and merged by addition.
day_partitions = dg.DailyPartitionsDefinition(start_date=config.first_day(), end_offset=1, timezone="UTC")
