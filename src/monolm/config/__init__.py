"""Typed configuration schema and the validation that runs before any heavy work."""
