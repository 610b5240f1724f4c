"""Partition stage: event key to writer lane."""
