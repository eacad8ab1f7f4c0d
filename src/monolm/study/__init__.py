"""The study: arms x seeds x stages, its plan, executors and report."""
