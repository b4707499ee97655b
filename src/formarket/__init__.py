"""formarket: a marketplace for AI models and agents whose catalog is a git repository."""

__version__ = "0.1.0"
__all__ = ["__version__"]
