"""r1_release: the public Alpamayo-R1 checkpoint's shape: Qwen3-VL-8B backbone and a ~2.3B expert.

The embedding keeps the release's 155697 rows (Qwen3's 151669 base tokens + 4028 added ones) so the
checkpoint converts as is; our own extension (`text.vocab_size`) must fit inside it. Build it
abstractly (`nnx.eval_shape`) on a laptop; train or serve it on accelerators.
"""

from alpamayo_jax.config.compose import policy_config


def get_config():
    config = policy_config("r1_release", "r1_release", qwen_family="qwen3", link_vocab=False)
    config.train.compute_dtype = "bfloat16"
    # The release's inputs: 4 cameras x 4 frames (t0-0.3 s .. t0) at 320 x 576 px.
    config.data.frames_per_camera = 4
    config.data.image_height = 320
    config.data.image_width = 576
    config.data.max_tokens = 4096
    return config
