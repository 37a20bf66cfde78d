"""Serving the policy to a simulator: the AlpaSim egodriver gRPC service (`alpasim.py`).

It needs the `serve` extra (the driver-interface package and gRPC), so nothing imports it
except `alpamayo serve`.
"""
