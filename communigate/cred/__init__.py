"""Credentials, password schemes and checkers."""
