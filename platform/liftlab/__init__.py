"""liftlab: experimentation and incrementality platform on Dagster and Postgres."""

__version__ = "0.1.0"
