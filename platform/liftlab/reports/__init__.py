"""Experiment reports rendered from the result tables only (HTML for people, Markdown for PRs)."""
