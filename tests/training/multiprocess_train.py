"""One process of the two-process training test (run by test_multiprocess.py, not by pytest).

Joins the job through `parallel/distributed.py` (gloo CPU collectives, 4 local CPU devices), trains
the toy task on a (2, 2, 2) mesh over the 8 global devices and writes its losses as JSON.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from alpamayo_jax.parallel.distributed import initialize, resolve_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    initialize(resolve_spec(args.coordinator, args.num_processes, args.process_id), local_cpu_devices=4)

    import jax
    from training_toy import toy_config, toy_task

    from alpamayo_jax.training.loop import train

    assert jax.process_count() == args.num_processes and jax.local_device_count() == 4
    config = toy_config(steps=args.steps, checkpoint_every=2)
    result = train(config, args.workdir, toy_task(), progress=False)
    record = {
        "process": jax.process_index(),
        "devices": jax.device_count(),
        "losses": {str(k): v for k, v in result.losses.items()},
        "checkpoints": result.checkpoints,
    }
    pathlib.Path(args.out).write_text(json.dumps(record))


if __name__ == "__main__":
    main()
