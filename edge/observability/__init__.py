"""Metrics, access logs and trace context: cheap when on, nothing when off."""
