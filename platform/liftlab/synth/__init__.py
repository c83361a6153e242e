"""liftlab.synth: the synthetic SaaS world (users, events, exposures, truth).

Pure numpy/polars, no database and no Dagster.  ``generate_world(config)``
returns a ``World`` whose frames follow the data contract of
docs/architecture.md; docs/synthetic_world.md documents every formula.
"""

from .config import FaultConfig, World, WorldConfig
from .design import EXPERIMENTS
from .world import WorldChunk, WorldStream, WorldTail, generate_world

__all__ = ["EXPERIMENTS", "FaultConfig", "World", "WorldChunk", "WorldConfig", "WorldStream", "WorldTail", "generate_world"]
