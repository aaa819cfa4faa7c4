"""plmon: an event-driven compliance monitor for Azure Private Link."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("plmon")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
