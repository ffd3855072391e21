"""The cooperative's commission ledger."""

__all__ = ["__version__"]

__version__ = "0.1.0"
