"""segserver: a real-time, in-memory segment server for on-site personalisation."""

__version__ = "0.1.0"
