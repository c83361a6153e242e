"""liftlab.synth: the synthetic SaaS world (users, events, exposures, truth).

Pure numpy/polars, no database and no Dagster.  ``generate_world(config)``
returns a ``World`` whose frames follow the data contract of
docs/architecture.md; docs/synthetic_world.md documents every formula.
"""

from .config import FaultConfig, World, WorldConfig
from .design import EXPERIMENTS
from .world import generate_world

__all__ = ["EXPERIMENTS", "FaultConfig", "World", "WorldConfig", "generate_world"]
