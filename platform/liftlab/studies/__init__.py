"""Simulation studies that check the pipeline against the synthetic ground truth."""
