"""Protocol servers and the listeners that accept their connections."""
