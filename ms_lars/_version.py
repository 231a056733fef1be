"""The version, defined once: setup.py reads this file, ms_lars exports it."""
__version__ = "0.8.0"
