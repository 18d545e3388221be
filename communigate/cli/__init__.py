"""The ``communigate`` administration command."""
