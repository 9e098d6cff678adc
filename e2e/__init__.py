"""e2e: end-to-end deep-learning reconstruction framework (core)."""

__version__ = "0.1.0"
