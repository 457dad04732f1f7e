"""Experiment runner, the offline-optimal bound, and reports (tables, plots, HTML)."""
