"""Optimizer, schedule, callbacks, run records and the training entry point."""
