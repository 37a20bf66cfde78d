"""r1_7b: Qwen2.5-VL-7B (= Cosmos-Reason1-7B, the paper's backbone) and a ~2B action expert.

Full size: build it abstractly (`nnx.eval_shape`, e.g. `models.policy_model.param_counts`) on a
laptop; train it on accelerators. The vocabulary is Qwen's base tokenizer extended with our
delimiters and trajectory bins (the embedding is resized to `text.vocab_size`, as the release does).
"""

from alpamayo_jax.config.compose import policy_config


def get_config():
    config = policy_config("r1_7b", "r1_7b", qwen_family="qwen2_5")
    config.train.compute_dtype = "bfloat16"
    return config
