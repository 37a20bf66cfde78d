"""The paper's ablations in miniature, on the demo's policy (see experiments/README.md)."""
