"""Scaling laws of the VLM's stage-1 loss and minADE in model and data size (see experiments/README.md)."""
