"""Ingress: turning client requests into Calls and Replies back into responses."""
