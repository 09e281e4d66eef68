"""Ductile: an event-sourced automation gateway."""

__version__ = "0.1.0"
