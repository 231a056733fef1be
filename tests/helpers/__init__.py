"""Modules the tests import or run as scripts; not tests themselves (tests/README.md)."""
