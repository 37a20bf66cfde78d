"""Experiments on alpamayo_jax: sweeps, scaling laws and the paper's ablations (see README.md here)."""
