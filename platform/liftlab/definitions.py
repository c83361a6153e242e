"""The Dagster code location: every definition under ``liftlab/defs``."""

import os
from pathlib import Path

import dagster as dg

#: Definitions built ahead of time by ``warm()`` (in a forkserver or a Celery worker), keyed by
#: the environment they were built under: a process forked from there finds them instead of
#: loading the code location again (~2 s per step).
_WARM: dict[frozenset, dg.Definitions] = {}


def build() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


def warm() -> dg.Definitions:
    """Build the definitions now and keep them for the processes forked from this one."""
    loaded = _WARM[frozenset(os.environ.items())] = build()
    return loaded


@dg.definitions
def defs() -> dg.Definitions:
    warmed = _WARM.get(frozenset(os.environ.items())) if _WARM else None
    return warmed if warmed is not None else build()
