"""Credential checkers: one per password source."""
