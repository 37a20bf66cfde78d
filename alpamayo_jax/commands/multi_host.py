"""The multi-host flags that `alpamayo train` and `alpamayo rl` share, and joining the job.

One process per host, each started with the same command plus --coordinator HOST:PORT (process
0's address), --num-processes and --process-id (or the ALPAMAYO_COORDINATOR /
ALPAMAYO_NUM_PROCESSES / ALPAMAYO_PROCESS_ID environment variables; parallel/distributed.py).
"""

from __future__ import annotations

import argparse
import sys

import ml_collections


def add_multi_host_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (multi-host)")
    parser.add_argument("--num-processes", type=int, default=None, help="processes in the job")
    parser.add_argument("--process-id", type=int, default=None, help="this process's index")


def check_multi_host(args: argparse.Namespace, command: str):
    """The job spec of the flags (before the config is loaded), or None after printing the one-line
    error of inconsistent flags (the caller exits 2)."""
    from alpamayo_jax.parallel.distributed import DistributedError, resolve_spec

    try:
        return resolve_spec(args.coordinator, args.num_processes, args.process_id)
    except DistributedError as err:
        print(f"alpamayo {command}: {err}", file=sys.stderr)
        return None


def join(spec, config: ml_collections.ConfigDict) -> None:
    """Join the job of `spec` (nothing for one process), or the cluster's own when the config asks
    for `mesh.distributed` auto-detection."""
    from alpamayo_jax.parallel.distributed import initialize

    initialize(spec)
    if config.mesh.distributed and not spec.multi_process:
        from alpamayo_jax.parallel.mesh import initialize_distributed

        initialize_distributed(config.mesh)
