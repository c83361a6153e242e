"""Shared worlds for tests/synth (pure: no database)."""

from __future__ import annotations

import pytest

from liftlab.synth import World, WorldConfig, generate_world

#: Users of the large world the truth-consistency tests compare against.
BIG_USERS = 60_000


@pytest.fixture(scope="session")
def small_config() -> WorldConfig:
    return WorldConfig(n_users=4_000, chunk_users=1_500, seed=7)


@pytest.fixture(scope="session")
def small_world(small_config: WorldConfig) -> World:
    return generate_world(small_config)


@pytest.fixture(scope="session")
def big_world() -> World:
    """The default world at 60k users (default seed, faults as in the demo)."""
    return generate_world(WorldConfig(n_users=BIG_USERS))
