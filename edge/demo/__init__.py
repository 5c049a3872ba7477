"""The built-in demo: a small library service to put the gateway in front of."""
