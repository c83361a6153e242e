"""Trust gates: pure checks (no Dagster) that decide whether an experiment may be analysed.

Every gate returns a :class:`liftlab.gates.result.GateResult` (PASS / WARN / FAIL, a statistic,
a p-value where there is one, a human ``reason`` and JSON-able ``details``) that
``liftlab.defs.gates`` records in ``gates.check_results``. A FAIL halts the experiment.
"""
