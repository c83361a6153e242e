"""Helpers for the uplift tests: specs in a scratch experiments folder, simulated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import yaml

from liftlab.config import REPO_ROOT


def write_specs(folder: Path, overrides: dict[str, dict]) -> Path:
    """Copy experiments/*.yaml to ``folder``; ``overrides[id]`` updates that spec's uplift block.
    The Hillstrom file path is made absolute so the copy still finds the data."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO_ROOT / "experiments").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("source", {}).get("kind") == "file":
            data["source"]["path"] = str((path.parent / data["source"]["path"]).resolve())
        if data["id"] in overrides and "uplift" in data:
            data["uplift"] = {**data["uplift"], **overrides[data["id"]]}
        (folder / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def simulate(n: int, seed: int, arms=("b",), p_treat: float = 0.5) -> pl.DataFrame:
    """Binary outcome, 4 features; arm a's effect is τ_a(x) = 0.25·sign(x0) (arm 'b') or
    0.15·[x1 > 0] (arm 'c'); baseline 'a'. Columns true_cate__y hold the arm's own τ."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    names = ["a", *arms]
    probs = [1 - p_treat] + [p_treat / len(arms)] * len(arms)
    variant = rng.choice(names, size=n, p=probs)
    base = 0.35 + 0.1 * np.tanh(X[:, 2])
    tau = np.zeros(n)
    tau_b = 0.25 * np.sign(X[:, 0])
    tau_c = 0.15 * (X[:, 1] > 0)
    tau = np.where(variant == "b", tau_b, np.where(variant == "c", tau_c, 0.0))
    y = (rng.random(n) < np.clip(base + tau, 0, 1)).astype(float)
    # the oracle column for arm b (used only when arms == ("b",))
    return pl.DataFrame({
        "unit_id": [f"u{i:06d}" for i in range(n)], "variant": variant, "x0": X[:, 0], "x1": X[:, 1],
        "x2": X[:, 2], "colour": np.where(X[:, 3] > 0, "red", "blue"), "y": y, "true_cate__y": tau_b,
    })
