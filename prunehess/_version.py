"""The version of prunehess (one place: the package, the report and setup.cfg read it)."""
__version__ = "0.1.0"
