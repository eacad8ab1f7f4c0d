"""monolm: monotone-constrained transformer language models and their adversarial robustness."""

__version__ = "0.1.0"
