"""Adapters: the real implementation of each port in connector/ports.py, plus in-memory fakes."""
