"""One process of the two-process GRPO test (run by test_rl_multiprocess.py, not by pytest).

Joins the job through `parallel/distributed.py` (gloo CPU collectives, 4 local CPU devices), runs
`train_grpo` on the shrunk tiny_grpo config over the 8 global devices and writes its per-step
metrics as JSON.
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
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--root", required=True, help="where rl_fixture made the dataset")
    parser.add_argument("--init", required=True, help="the SFT workdir")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    initialize(resolve_spec(args.coordinator, 2, args.process_id), local_cpu_devices=4)

    import jax
    from rl_fixture import rl_config

    from alpamayo_jax.recipes.grpo import train_grpo
    from alpamayo_jax.rl.rollout import RolloutMaker
    from alpamayo_jax.training.metrics import read_metrics

    assert jax.process_count() == 2 and jax.local_device_count() == 4
    seen = {"local": [], "rolled_out": [], "rows": []}  # per step: the prompts' sample indices
    gather = RolloutMaker._all_prompts

    def recording(self, prompts):
        merged, rows = gather(self, prompts)
        seen["local"].append(prompts.sample_index.tolist())
        seen["rolled_out"].append(merged.sample_index.tolist())
        seen["rows"].append([rows.start, rows.stop])
        return merged, rows

    RolloutMaker._all_prompts = recording
    config = rl_config(pathlib.Path(args.root), steps=2)
    result = train_grpo(config, args.workdir, args.init, progress=False)
    record = {
        "process": jax.process_index(),
        "devices": jax.device_count(),
        "losses": {str(k): v for k, v in result.losses.items()},
        "checkpoints": result.checkpoints,
        "prompts": seen,
    }
    if jax.process_index() == 0:
        record["metrics"] = read_metrics(args.workdir, "train")
    pathlib.Path(args.out).write_text(json.dumps(record))


if __name__ == "__main__":
    main()
