"""Evaluation metrics: likelihood-based scores and generation metrics."""
