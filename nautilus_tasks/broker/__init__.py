"""Brokers: what the runtime needs from a bus, and the Redis implementation."""
