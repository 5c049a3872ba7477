"""Policy layers around the one terminal upstream step."""
