"""plmon: an event-driven compliance monitor for Azure Private Link."""

# The version as written, not read from the installed distribution: importlib.metadata and its lookup were ~0.05 s
# of every command's start-up (~10% of ``plmon scan``'s imports). tests/monitor/test_version.py holds it equal to
# pyproject.toml's and to the installed distribution's.
__version__ = "0.1.0"
