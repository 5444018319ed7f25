"""Deployment checks that a schema cannot express; run through ../check_rendered.py."""
