"""What administrators watch: login and logout events, log files, metrics."""
