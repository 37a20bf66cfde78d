"""tiny: the smallest setup that still learns; trains in minutes on 2 CPU cores (tests, Quick start).

Qwen3-VL family at toy width (model preset `tiny`), the synthetic vocabulary of the embedded world.
"""

from alpamayo_jax.config.compose import policy_config
from alpamayo_jax.data.decisions import DECISION_NAMES


def get_config():
    config = policy_config("tiny", "tiny")
    config.data.image_height = 64
    config.data.image_width = 128
    # 8000 training scenes (about 40 s to generate once on 2 cores): at 1000 steps of 8 no scene is
    # seen more than once or twice, so the reasoning cannot be learnt by heart from the history.
    config.data.num_train = 8000
    # The random ViT is first trained to classify the world's decisions (configs/tiny_vision.py).
    config.model.vision.decision_classes = len(DECISION_NAMES)
    # Two ViT blocks, two LLM layers, two expert layers: as straight-line code rather than loops
    # the joint step ran 200 -> 178 ms (config/models.py `unroll_layers`; docs/performance.md).
    config.model.unroll_layers = True
    # The 35k-parameter expert does not learn in one short stage 2 to remove all of the per-step
    # noise it starts from, and what it leaves is jerk (plans jumping by 4 m/s^2 between 0.1 s
    # steps). In the span of the 16 smoothest cosines over the horizon every sample is smooth
    # (trajectory/smooth_basis.py); the expert planner's targets move by 1 mm there.
    config.model.expert.action_basis = 16
    # ... and the expert predicts the clean actions, the flow's velocity following from them
    # (models/expert.py): a network this small does not learn to reproduce the 128-dimensional
    # noise that velocity prediction asks for, and what it misses stays in the plan as wobble (the
    # plans of 16-cosine velocity prediction still broke the jerk bound in 100% of test scenes,
    # those of data prediction in 0%).
    config.model.expert.prediction = "data"
    # Closed loop, each re-plan starts at the car's current acceleration (trajectory/stitch.py),
    # blended back into the plan over 2 s: the plans still start a median 0.37-0.53 m/s^2 off the
    # car's acceleration (at 1 s), and a jump at every re-plan is a jolt (docs/driving.md: comfort
    # violations 0.64 -> 0.47 closed loop from 1 s to 2 s, open-loop minADE 2.72 -> 2.89 m).
    config.action.stitch_s = 2.0
    # ... and the histories it learns from change their acceleration (a ramp of up to 2 m/s^3,
    # world/generate.py) as a driven car's do: trained on constant ones only, its plans started
    # a median 0.52-0.68 m/s^2 off the car's acceleration at re-plans (0.22 open loop).
    config.data.history_jerk = 2.0

    # -- Training of the Quick-start demo (tools/demo.sh; configs/tiny_vision.py, tiny_joint.py) --
    # Budget: vision stage + stage 1 + joint stage + eval in about 11 minutes on 2 cores (~0.15 s
    # per stage-1 step of 8).
    # The longest chat of the world is 391 tokens (227 prompt + CoC + 128 future + delimiters);
    # padding to 512 cost ~25% more per step for nothing.
    config.data.max_tokens = 416
    # Of those, only the answer (CoC, delimiters, trajectory) has a token loss: at most 163
    # positions in the world's splits with the demo's tokenizer. The demo computes the logits there
    # alone (tools/demo.sh: --config.data.max_supervised_tokens=176; 234 -> 200 ms per joint step,
    # docs/performance.md). Not set here: a tokenizer trained on a small corpus writes the same
    # reasoning in more tokens, and the pipeline would refuse those chats.
    config.train.steps = 1000
    config.train.batch_size = 8
    # A chat holds ~20 reasoning tokens beside 128 trajectory tokens; averaged together the text
    # gets an eighth of the gradient and greedy decoding of the 400-step model repeated one word.
    # Its own mean (models/losses.py `reasoning`) at weight 1 makes the reasoning fluent.
    config.train.reasoning_weight = 1.0
    # A 0.4M-parameter model from scratch takes a 10x higher rate than the base 3e-4. Its ViT comes
    # from the vision stage (configs/tiny_vision.py, `--config.train.init_from`), so it keeps the
    # paper's x0.1 for a pretrained vision tower: at x1 stage 1 would wash out what it learnt there.
    config.train.lr = 3e-3
    config.train.warmup_steps = 20
    config.train.lr_multipliers.vision = 0.1
    # ... and only from there: from a random ViT one stage 1 learns to state the decision from the
    # ego history alone and drives worse than constant velocity, so it refuses to start without it.
    config.train.requires_init = "configs/tiny_vision.py"
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.log_every = 25
    return config
