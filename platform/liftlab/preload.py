"""Imported once by a process that forks a run's steps (the local executor's forkserver,
``liftlab.defs.execution``): liftlab's modules are imported and its code location is built here,
so every step forked from this process starts with them instead of loading them again.

Only processes that import this module keep a built code location; any other process loads it
on each ``defs()`` as before (an environment changed since, e.g. another ``LIFTLAB_EXECUTOR``, also
loads it again).
"""

from liftlab import definitions

definitions.warm()
