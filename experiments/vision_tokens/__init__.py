"""Efficient vision encoding: fewer vision tokens at equal training budget (see experiments/README.md)."""
