"""Bundled torch trainer for the event-grounded world-action model."""
