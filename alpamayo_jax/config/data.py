"""The `data` section of the config: which dataset, image geometry, and the synthetic world's cache.

With `dir = None` training and evaluation use the embedded synthetic world: the splits are generated
once (deterministically from `seed`) into `cache_dir/<key>` and reused while the config that shapes
them is unchanged. Set `dir` to read an existing dataset written by `alpamayo data synth`.
"""

from __future__ import annotations

import ml_collections


def data_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.world = "coc_world_v2"  # the synthetic world's name (world/)
    c.dir = ml_collections.FieldReference(None, field_type=str)  # existing dataset; None = synthetic cache
    c.cache_dir = "~/.cache/alpamayo_jax/synthetic"
    c.seed = 0  # seed of the synthetic splits (train, val, test draw from 3 seed, 3 seed + 1, 3 seed + 2)
    c.num_train = 2000
    c.num_val = 200
    c.num_test = 200
    c.shard_size = 1000  # samples per array_record shard
    c.workers = 0  # processes generating the synthetic world; 0 = all cores
    # Largest |jerk| (m/s^3) of the ego's acceleration ramp over a sample's history (world/generate.py);
    # 0 = one acceleration throughout.
    c.history_jerk = 0.0
    # Cameras (camera-major in a sample, frames oldest first at 0.1 s spacing ending at t0).
    c.cameras = ("cross_left_120fov", "front_wide_120fov", "cross_right_120fov", "front_tele_30fov")
    c.frames_per_camera = 2  # release: 4 (t0-0.3 .. t0)
    c.image_height = 56  # release: 320
    c.image_width = 112  # release: 576
    c.image_multiple = 28  # image sides must be multiples of patch x merge (28 Qwen2.5-VL, 32 Qwen3-VL)
    # Batch pipeline (data/pipeline.py): token length every sample is padded to (release-like
    # setups need ~4096: 16 images x 180 tokens + text), and grain's loader parallelism per host.
    c.max_tokens = 512
    # Positions of a chat with a token loss (its reasoning and trajectory answer) the SFT loss
    # computes vocabulary logits at; None = every position. The prompt before the answer has no
    # loss, and the logits of its positions are the largest tensor of a small model's step
    # (models/losses.py `supervised_positions`). The pipeline refuses a chat with more.
    c.max_supervised_tokens = ml_collections.FieldReference(None, field_type=int)
    c.pipeline_workers = 0  # grain worker processes; 0 = encode in the training process
    c.pipeline_threads = 1  # reader threads per process
    c.pipeline_prefetch = 2  # batches buffered per process
    return c
