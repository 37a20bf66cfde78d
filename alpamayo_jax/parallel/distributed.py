"""Join a multi-process JAX job: `jax.distributed.initialize` from flags or the environment.

Three values describe a job: the coordinator's `host:port` (process 0 listens there), the number
of processes and this process's id. They come from command-line flags, else from the environment
(`ALPAMAYO_COORDINATOR`, `ALPAMAYO_NUM_PROCESSES`, `ALPAMAYO_PROCESS_ID`); with none of them set
the run is a single process and nothing happens, so the same command serves a laptop and a pod.
(On managed clusters where JAX finds the job by itself, e.g. TPU pods or SLURM, `mesh.distributed`
calls `jax.distributed.initialize()` with no arguments instead; see `parallel/mesh.py`.)

On CPU, cross-process collectives need an implementation; gloo is selected before the backend
starts, which is what makes the two-process test on 127.0.0.1 possible.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax

ENV_COORDINATOR = "ALPAMAYO_COORDINATOR"
ENV_NUM_PROCESSES = "ALPAMAYO_NUM_PROCESSES"
ENV_PROCESS_ID = "ALPAMAYO_PROCESS_ID"


class DistributedError(ValueError):
    """Incomplete or inconsistent multi-process settings; the message names the flag/variable."""


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @property
    def multi_process(self) -> bool:
        return self.coordinator is not None


def _int(name: str, text: str | int | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name} must be an integer, got {text!r}") from None


def resolve_spec(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> DistributedSpec:
    """Flags win over the environment; all three values or none of them."""
    env = os.environ if environ is None else environ
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    num = _int("--num-processes", num_processes)
    if num is None:
        num = _int(ENV_NUM_PROCESSES, env.get(ENV_NUM_PROCESSES))
    pid = _int("--process-id", process_id)
    if pid is None:
        pid = _int(ENV_PROCESS_ID, env.get(ENV_PROCESS_ID))
    given = {"coordinator": coordinator, "num_processes": num, "process_id": pid}
    if all(v is None for v in given.values()):
        return DistributedSpec()
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise DistributedError(
            f"multi-process run needs coordinator, num_processes and process_id; missing "
            f"{', '.join(missing)} (flags --coordinator/--num-processes/--process-id or "
            f"{ENV_COORDINATOR}/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})"
        )
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    if num < 1:
        raise DistributedError(f"num_processes must be >= 1, got {num}")
    if not 0 <= pid < num:
        raise DistributedError(f"process_id must lie in [0, {num}), got {pid}")
    return DistributedSpec(coordinator, num, pid)


def initialize(spec: DistributedSpec, *, local_cpu_devices: int | None = None) -> None:
    """Start this process's part of the job (call before any other JAX use); no-op if single.

    `local_cpu_devices` sets how many CPU devices this process exposes (tests use 4 per process).
    """
    if local_cpu_devices is not None:
        jax.config.update("jax_num_cpu_devices", int(local_cpu_devices))
    if not spec.multi_process or spec.num_processes == 1:
        return
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=spec.coordinator,
        num_processes=spec.num_processes,
        process_id=spec.process_id,
    )
