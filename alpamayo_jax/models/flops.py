"""Analytic FLOPs of one training step, per component, forward and backward: the numerator of MFU.

Why analytic: XLA's cost analysis of the compiled train step counts the body of a `jax.lax.scan`
once whatever its trip count, and the towers scan their layers (ViT blocks, LLM layers, expert
layers), so its figure leaves out all layers but one of each tower (and, with
`train.grad_accum_steps` > 1, all micro-batches but one). This count follows the code instead;
tests/model/test_flops.py checks it against XLA's count of builds with one layer everywhere, where
a scanned body counted once is the whole model.

What is counted: matrix multiplies, 2 FLOPs per multiply-add, over every position the step
computes (the padded batch: `B x data.max_tokens` text positions, every image, every action step).
- Attention is counted dense: each query scores every key of its sequence and the mask is applied
  to the logits, as `nn/attention.py` `dot_product_attention` computes it (and as MFU is usually
  counted). The LLM's causal L x L (about half of it masked), the expert's T x (L + T) (the whole
  padded prefix) and the ViT's P x P per image (Qwen2.5-VL windows are masks over the whole image)
  count in full. A kernel that skips masked blocks (a chunked causal attention) does less work than
  this count says; the count stays the model's, whatever the kernel.
- Left out: norms, activations, softmax, RoPE, the embedding gather and its scatter-add, the loss,
  gradient clipping and the optimizer: a few FLOPs per element or parameter against a matmul's
  2 x width (XLA counts them: 3-11% of its count at the tests' toy widths, less at real ones).

Forward and backward, as the step runs them:
- The forward runs every tower that feeds a reported loss term. The step reports every term,
  weighted or not (`training/step.py` metrics), so stage 1 also runs the expert for `loss/flow`
  and stage 2 the LM head for `loss/ce`; the vision stage runs the ViT alone (no DeepStack merger).
- The backward of a matmul Y = A B costs one more matmul per operand that needs a gradient, and
  only where Y's cotangent is not zero (Y reaches a weighted loss through differentiable ops): dA
  when A depends on a trainable parameter, dB likewise (for a weight: trainable in this stage,
  `config/stages.py` and `train.frozen`). A frozen tower costs its forward only; the first matmul
  of a tower fed by constants (pixels, Fourier features) has no input gradient; the stop-gradient
  prefix cuts the flow loss off the LLM (and the expert's key and value gradients then cover its
  own T action keys only).
- Rematerialisation (`model.remat`): the backward of each scanned layer reruns part of its forward
  ('full': every matmul but the MLP's output projection, whose result no gradient reads;
  'dots_no_batch': the attention's two batched matmuls; 'dots', 'everything': none). That is
  `recompute`: in `hardware_flops`, not in `model_flops` (MFU counts the work the model needs,
  not the work an implementation chooses to redo). The policies see plain `dot_general`s only: a
  matmul behind a custom VJP is not saved by 'dots' / 'dots_no_batch' and is redone as by 'full',
  which this count does not follow.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

import ml_collections

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.config.stages import get_stage

REMAT_RECOMPUTES = {
    # policy -> the kinds of matmul in a scanned layer its backward runs again
    "none": frozenset(),
    "everything": frozenset(),
    "dots": frozenset(),
    "dots_no_batch": frozenset({"attention"}),
    "full": frozenset({"projection", "attention"}),
}
# Matmul kinds inside a layer: q/k/v/o and MLP inputs ("projection"), the two batched attention
# products ("attention"), the MLP's output ("mlp_out": its result is only added to the residual).


# -- shared matrix sizes (the roofline's too, inference/roofline.py) ------------------------------


def llm_layer_params(llm: ml_collections.ConfigDict) -> int:
    """Matrix parameters of one LLM decoder layer (attention projections + SwiGLU MLP)."""
    d, hd = llm.hidden, llm.head_dim
    attn = d * llm.heads * hd * 2 + d * llm.kv_heads * hd * 2
    return attn + 3 * d * llm.mlp


def expert_layer_params(llm: ml_collections.ConfigDict, expert: ml_collections.ConfigDict) -> int:
    """Matrix parameters of one expert layer: its own width and query heads, the LLM's KV shape."""
    d, hd = expert.hidden, llm.head_dim
    attn = d * expert.heads * hd * 2 + d * llm.kv_heads * hd * 2
    return attn + 3 * d * expert.mlp


def vit_block_params(vision: ml_collections.ConfigDict) -> int:
    """Matrix parameters of one ViT block: q, k, v, o (full heads) and the MLP (2 or 3 matrices)."""
    mlp_mats = 3 if vision.mlp_type == "swiglu" else 2
    return 4 * vision.hidden**2 + mlp_mats * vision.hidden * vision.mlp


def merger_params(vision: ml_collections.ConfigDict) -> int:
    """Matrix parameters of one patch merger: Linear(m^2 D, m^2 D), Linear(m^2 D, out)."""
    wide = vision.hidden * vision.merge_size**2
    return wide * wide + wide * vision.out_hidden


# -- the shape of one step ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepShape:
    """The batch dimensions the FLOPs scale with (`models/batch.py` `Batch`)."""

    batch: int
    seq_len: int  # padded text positions per sample (all computed)
    images: int  # per sample
    image_hw: tuple[int, int]  # pixels
    action_steps: int  # expert tokens per sample (future steps)
    action_dim: int = 2

    @classmethod
    def of_config(cls, config: ml_collections.ConfigDict, batch_size: int | None = None) -> StepShape:
        """The shapes `Batch.fake(config, batch_size)` and the data pipeline produce."""
        scene = SceneSpec.from_config(config)
        return cls(
            batch=int(batch_size or config.train.batch_size),
            seq_len=int(config.data.max_tokens),
            images=scene.num_images,
            image_hw=scene.image_hw,
            action_steps=scene.future_steps,
        )

    @classmethod
    def of_batch(cls, batch: Any) -> StepShape:
        """The shapes of a `Batch` (numpy or jax leaves, or ShapeDtypeStructs)."""
        b, n, h, w, _ = batch.images.shape
        _, steps, dim = batch.actions_norm.shape
        return cls(b, int(batch.tokens.shape[1]), n, (h, w), steps, dim)


# -- the result -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Cost:
    """FLOPs of one component: its forward, its backward, and forward work the backward redoes."""

    forward: float = 0.0
    backward: float = 0.0
    recompute: float = 0.0

    @property
    def model(self) -> float:
        return self.forward + self.backward


@dataclasses.dataclass(frozen=True)
class StepFlops:
    """Matmul FLOPs of one training step by component (`vision.layers`, `llm.attention`, ...)."""

    components: dict[str, Cost]
    shape: StepShape
    stage: str
    remat: str
    weights: frozenset[str] = frozenset()  # the parameter paths of the counted weight matmuls

    @property
    def forward(self) -> float:
        return sum(c.forward for c in self.components.values())

    @property
    def backward(self) -> float:
        return sum(c.backward for c in self.components.values())

    @property
    def model_flops(self) -> float:
        """Forward + backward: the work the step needs (the MFU numerator)."""
        return self.forward + self.backward

    @property
    def hardware_flops(self) -> float:
        """Model FLOPs plus the rematerialised forward work the backward redoes."""
        return self.model_flops + sum(c.recompute for c in self.components.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: totals and every component's forward / backward / recompute."""
        return {
            "model_flops": self.model_flops,
            "hardware_flops": self.hardware_flops,
            "forward": self.forward,
            "backward": self.backward,
            "stage": self.stage,
            "remat": self.remat,
            "shape": dataclasses.asdict(self.shape),
            "components": {k: dataclasses.asdict(c) for k, c in self.components.items()},
        }


# -- what trains ----------------------------------------------------------------------------------


def parameter_paths(model_cfg: ml_collections.ConfigDict) -> list[str]:
    """Every parameter path of the policy ('backbone/llm/layers/attn/wq', ...), from shapes only."""
    # Imported here: the roofline (inference/) uses the sizes above without building a model.
    from flax import nnx

    from alpamayo_jax.models.policy_model import PolicyModel

    model = nnx.eval_shape(lambda: PolicyModel(model_cfg, rngs=nnx.Rngs(0)))
    return ["/".join(str(k) for k in path) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]


def _matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, path) for p in patterns)


def trainable_paths(config: ml_collections.ConfigDict, paths: Iterable[str]) -> frozenset[str]:
    """The paths the stage optimises: the rule of `training/stages.py` `is_trainable`."""
    train = config.train
    stage = get_stage(train.stage)
    keep = set()
    for path in paths:
        if _matches_any(path, train.frozen):
            continue
        if stage.trains is None or _matches_any(path, train[stage.trains]):
            keep.add(path)
    return frozenset(keep)


# -- the count ------------------------------------------------------------------------------------


class _Ledger:
    """Adds matmuls to components; knows which parameters train and which layer matmuls a
    rematerialising backward runs again."""

    def __init__(self, trainable: frozenset[str], remat: str):
        if remat not in REMAT_RECOMPUTES:
            raise ValueError(f"model.remat {remat!r} unknown; expected one of {sorted(REMAT_RECOMPUTES)}")
        self.trainable = trainable
        self.recomputes = REMAT_RECOMPUTES[remat]
        self.components: dict[str, Cost] = {}
        self.weights: set[str] = set()

    def trains(self, *prefixes: str) -> bool:
        """Whether any parameter at or under one of `prefixes` is trainable."""
        return any(p == q or p.startswith(q + "/") for p in self.trainable for q in prefixes)

    def matmul(
        self, component: str, flops: float, grads: tuple[bool, bool], *, cotangent: bool, kind: str = ""
    ) -> bool:
        """Y = A B of `flops` forward FLOPs; returns whether Y depends on a trainable parameter.

        `grads`: whether A and B need gradients; each one that does costs `flops` more in the
        backward when Y has a cotangent. `kind`: the matmul's role in a scanned layer
        (REMAT_RECOMPUTES keys), '' outside the scanned layers.
        """
        cost = self.components.setdefault(component, Cost())
        cost.forward += flops
        if cotangent:
            cost.backward += flops * sum(grads)
            if kind in self.recomputes:
                cost.recompute += flops
        return any(grads)

    def linear(
        self,
        component: str,
        rows: int,
        din: int,
        dout: int,
        kernel: str,
        x_grad: bool,
        *,
        cotangent: bool,
        kind: str = "",
    ) -> bool:
        """x [rows, din] @ the parameter at `kernel` [din, dout]; the output's gradient flag
        includes the kernel's module (its bias)."""
        flops = 2.0 * rows * din * dout
        self.weights.add(kernel)
        y = self.matmul(component, flops, (x_grad, self.trains(kernel)), cotangent=cotangent, kind=kind)
        module = kernel.removesuffix("/kernel")
        return y or (module != kernel and self.trains(module))


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One pre-norm attention + MLP layer (LLM, expert, ViT block): its sizes and parameter paths."""

    component: str  # breakdown keys '<component>.layers' and '<component>.attention'
    prefix: str  # parameter path of the stacked layers
    norms: tuple[str, str]  # the norm before the attention, the one before the MLP
    sequences: int
    queries: int  # per sequence; each one is also a key of its sequence
    prefix_keys: int  # keys beyond the sequence's own (the expert's VLM prefix), per sequence
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    swiglu: bool  # gate, up, down; else a GELU MLP fc1, fc2


def _layer(ledger: _Ledger, s: _Layer, x_grad: bool, prefix_kv_grad: bool, cotangent: bool) -> None:
    """Count one layer whose input's gradient flag is `x_grad`; `prefix_kv_grad`: the keys and
    values beyond the layer's own (the expert's prefix) need a gradient."""
    layers, attn = f"{s.component}.layers", f"{s.component}.attention"
    a, m = f"{s.prefix}/attn", f"{s.prefix}/mlp"
    rows, qd, kvd = s.sequences * s.queries, s.heads * s.head_dim, s.kv_heads * s.head_dim
    proj = dict(cotangent=cotangent, kind="projection")
    x = x_grad or ledger.trains(f"{s.prefix}/{s.norms[0]}")
    q = ledger.linear(layers, rows, s.hidden, qd, f"{a}/wq", x, **proj)
    k = ledger.linear(layers, rows, s.hidden, kvd, f"{a}/wk", x, **proj)
    v = ledger.linear(layers, rows, s.hidden, kvd, f"{a}/wv", x, **proj)
    q = q or ledger.trains(f"{a}/bq", f"{a}/q_norm")
    k = k or ledger.trains(f"{a}/bk", f"{a}/k_norm")
    v = v or ledger.trains(f"{a}/bv")
    # Dense logits q k^T and weighted sum p v of every query head over its sequence's own keys and
    # (the expert) the prefix keys, which need gradients only where the prefix does.
    own = 2.0 * s.sequences * s.queries * s.queries * s.heads * s.head_dim
    att = dict(cotangent=cotangent, kind="attention")
    ledger.matmul(attn, own, (q, k), **att)
    p = q or k or prefix_kv_grad  # one softmax over all keys: each probability depends on every key
    ledger.matmul(attn, own, (p, v), **att)
    if s.prefix_keys:
        prefix = 2.0 * s.sequences * s.queries * s.prefix_keys * s.heads * s.head_dim
        ledger.matmul(attn, prefix, (q, prefix_kv_grad), **att)
        ledger.matmul(attn, prefix, (p, prefix_kv_grad), **att)
    o = p or v or prefix_kv_grad
    h = ledger.linear(layers, rows, qd, s.hidden, f"{a}/wo", o, **proj)
    h = h or x_grad or ledger.trains(f"{a}/bo", f"{s.prefix}/{s.norms[1]}")
    if s.swiglu:
        gate = ledger.linear(layers, rows, s.hidden, s.mlp, f"{m}/gate/kernel", h, **proj)
        up = ledger.linear(layers, rows, s.hidden, s.mlp, f"{m}/up/kernel", h, **proj)
        inner, out = gate or up, "down"
    else:
        inner, out = ledger.linear(layers, rows, s.hidden, s.mlp, f"{m}/fc1/kernel", h, **proj), "fc2"
    # The MLP's output is only added to the residual stream: no backward reads it, no remat redoes it.
    ledger.linear(
        layers, rows, s.mlp, s.hidden, f"{m}/{out}/kernel", inner, cotangent=cotangent, kind="mlp_out"
    )


def _scanned(
    ledger: _Ledger, s: _Layer, depth: int, x_grad: bool, *, cotangent: bool, prefix_kv_grad: bool = False
) -> bool:
    """`depth` layers run by one scan; returns the gradient flag of its output.

    JAX differentiates every iteration of a scan alike, so the carry needs a gradient in all of
    them if it does after any (some layer parameter trains): one flag for every layer.
    """
    carry = x_grad or ledger.trains(s.prefix)
    for _ in range(depth):
        _layer(ledger, s, carry, prefix_kv_grad, cotangent)
    return carry


def _merger(ledger: _Ledger, vision, prefix: str, rows: int, x_grad: bool, cotangent: bool) -> bool:
    """A patch merger over `rows` merged tokens: Linear(m^2 D, m^2 D), GELU, Linear(m^2 D, out)."""
    wide = vision.hidden * vision.merge_size**2
    x = x_grad or ledger.trains(f"{prefix}/norm")
    h = ledger.linear("vision.mergers", rows, wide, wide, f"{prefix}/mlp/fc1/kernel", x, cotangent=cotangent)
    path = f"{prefix}/mlp/fc2/kernel"
    return ledger.linear("vision.mergers", rows, wide, vision.out_hidden, path, h, cotangent=cotangent)


def _vision(
    ledger: _Ledger, vision: ml_collections.ConfigDict, shape: StepShape, *, cotangent: bool, deepstack: bool
) -> tuple[bool, bool]:
    """The ViT over every image of the batch; returns the gradient flags of (merged tokens,
    DeepStack features).

    Each image is its own sequence (`VisionEncoder.__call__` folds the images into the batch axis),
    attending over all its patches. `deepstack`: the DeepStack mergers run (not in the vision
    stage, which reads the merged tokens only, so XLA drops them).
    """
    root = "backbone/vision"
    images = shape.batch * shape.images
    h, w = shape.image_hw
    patches = (h // vision.patch_size) * (w // vision.patch_size)
    merged = images * (patches // vision.merge_size**2)
    # The uint8 path embeds one frame with the kernel summed over its temporal slices: 3 P^2 inputs.
    pixels = 3 * vision.patch_size**2
    path = f"{root}/patch_kernel"
    x = ledger.linear(
        "vision.patch_embed", images * patches, pixels, vision.hidden, path, False, cotangent=cotangent
    )
    x = x or ledger.trains(f"{root}/patch_bias", f"{root}/pos_table")
    block = _Layer(
        component="vision",
        prefix=f"{root}/blocks",
        norms=("norm1", "norm2"),
        sequences=images,
        queries=patches,
        prefix_keys=0,
        hidden=vision.hidden,
        heads=vision.heads,
        kv_heads=vision.heads,
        head_dim=vision.hidden // vision.heads,
        mlp=vision.mlp,
        swiglu=vision.mlp_type == "swiglu",
    )
    x = _scanned(ledger, block, vision.depth, x, cotangent=cotangent)
    out = _merger(ledger, vision, f"{root}/merger", merged, x, cotangent)
    deep = False
    for i in range(len(tuple(vision.deepstack_blocks)) if deepstack else 0):
        deep = _merger(ledger, vision, f"{root}/deepstack_mergers/{i}", merged, x, cotangent) or deep
    return out, deep


def _decision_head(ledger: _Ledger, vision, batch: int, x_grad: bool) -> None:
    """The vision stage's classifier of each scene's mean merged token: fc1 (out, out), fc2 (out, C)."""
    root, o, c = "backbone/vision/decision_head", vision.out_hidden, int(vision.decision_classes)
    h = ledger.linear("vision.decision_head", batch, o, o, f"{root}/fc1/kernel", x_grad, cotangent=True)
    ledger.linear("vision.decision_head", batch, o, c, f"{root}/fc2/kernel", h, cotangent=True)


def _llm(ledger: _Ledger, llm: ml_collections.ConfigDict, shape: StepShape, x_grad: bool, *, cotangent: bool):
    """The decoder layers over the padded chat, dense L x L attention; returns the gradient flag of
    the hidden states, which is also that of every layer's K/V (the scan's carry)."""
    layer = _Layer(
        component="llm",
        prefix="backbone/llm/layers",
        norms=("attn_norm", "mlp_norm"),
        sequences=shape.batch,
        queries=shape.seq_len,
        prefix_keys=0,
        hidden=llm.hidden,
        heads=llm.heads,
        kv_heads=llm.kv_heads,
        head_dim=llm.head_dim,
        mlp=llm.mlp,
        swiglu=True,
    )
    x_grad = x_grad or ledger.trains("backbone/llm/embedding")
    return _scanned(ledger, layer, llm.layers, x_grad, cotangent=cotangent)


def _lm_head(
    ledger: _Ledger, llm, shape: StepShape, x_grad: bool, *, cotangent: bool, supervised: int | None
) -> None:
    """Vocabulary logits at every position but the last (which predicts nothing), or at the
    `supervised` positions gathered per sample (`data.max_supervised_tokens`, models/losses.py);
    a tied head is the embedding's transpose."""
    path = "backbone/llm/embedding" if llm.tied else "backbone/llm/lm_head"
    x_grad = x_grad or ledger.trains("backbone/llm/final_norm")
    positions = shape.seq_len - 1 if supervised is None else min(int(supervised), shape.seq_len - 1)
    rows = shape.batch * positions
    ledger.linear("llm.lm_head", rows, llm.hidden, llm.vocab, path, x_grad, cotangent=cotangent)


def _expert(
    ledger: _Ledger,
    model: ml_collections.ConfigDict,
    shape: StepShape,
    prefix_kv_grad: bool,
    *,
    cotangent: bool,
) -> None:
    """Action in-projection (Fourier features -> MLP), the layers (T action queries over the T
    action keys and the whole padded prefix of L), out-projection."""
    llm, e, root, comp = model.llm, model.expert, "expert", "expert.action_proj"
    rows = shape.batch * shape.action_steps
    features = 2 * e.fourier_frequencies * (shape.action_dim + 1)
    path = f"{root}/in_proj/inp/kernel"
    x = ledger.linear(comp, rows, features, e.action_mlp_width, path, False, cotangent=cotangent)
    din = e.action_mlp_width
    for i, dout in enumerate([e.action_mlp_width] * (e.action_mlp_layers - 2) + [e.hidden]):
        x = x or ledger.trains(f"{root}/in_proj/norms/{i}")
        x = ledger.linear(comp, rows, din, dout, f"{root}/in_proj/linears/{i}/kernel", x, cotangent=cotangent)
        din = dout
    layer = _Layer(
        component="expert",
        prefix=f"{root}/layers",
        norms=("attn_norm", "mlp_norm"),
        sequences=shape.batch,
        queries=shape.action_steps,
        prefix_keys=shape.seq_len,
        hidden=e.hidden,
        heads=e.heads,
        kv_heads=llm.kv_heads,
        head_dim=llm.head_dim,
        mlp=e.mlp,
        swiglu=True,
    )
    x = x or ledger.trains(f"{root}/in_proj/out_norm")
    x = _scanned(ledger, layer, llm.layers, x, cotangent=cotangent, prefix_kv_grad=prefix_kv_grad)
    x = x or ledger.trains(f"{root}/final_norm")
    x = ledger.linear(
        comp, rows, e.hidden, shape.action_dim, f"{root}/out_proj/proj/kernel", x, cotangent=cotangent
    )
    if int(e.get("action_basis", 0)):
        # The smooth span (trajectory/smooth_basis.py): a projection is two products, onto the K
        # cosines and back. The targets and the noise are projected without a gradient, the
        # expert's output with one.
        span = 2 * (2.0 * rows * int(e.action_basis) * shape.action_dim)
        ledger.matmul("expert.smooth_span", 2 * span, (False, False), cotangent=cotangent)
        ledger.matmul("expert.smooth_span", span, (x, False), cotangent=cotangent)


def weighted_terms(config: ml_collections.ConfigDict) -> frozenset[str]:
    """The loss terms the stage optimises (the names of `training/stages.py` `loss_weights`)."""
    stage = get_stage(config.train.stage)
    terms = set(stage.loss_terms)
    if stage.reasoning and float(config.train.get("reasoning_weight", 0.0)) > 0:
        terms.add("reasoning")
    return frozenset(terms)


def train_step_flops(
    config: ml_collections.ConfigDict, shape: StepShape | None = None, *, paths: Iterable[str] | None = None
) -> StepFlops:
    """Matmul FLOPs of one training step of `config` (its stage, freezing, stop-gradient and remat)
    on a batch of `shape` (default `StepShape.of_config(config)`).

    `paths`: the policy's parameter paths when the caller has them (default: `parameter_paths`,
    an abstract build of the policy, about a second).
    """
    shape = shape or StepShape.of_config(config)
    model, stage, terms = config.model, get_stage(config.train.stage), weighted_terms(config)
    remat = str(model.get("remat", "none"))
    paths = parameter_paths(model) if paths is None else paths
    ledger = _Ledger(trainable_paths(config, paths), remat)
    if stage.vision_only:
        merged, _ = _vision(ledger, model.vision, shape, cotangent=True, deepstack=False)
        _decision_head(ledger, model.vision, shape.batch, merged)
    else:
        tokens_ct, flow_ct = bool(terms & {"ce", "reasoning"}), "flow" in terms
        stop = bool(config.train.stop_gradient_prefix) or stage.stop_gradient_prefix
        # The LLM's cotangent comes from the token terms and, without the stop-gradient, from the
        # expert reading its K/V. (Flow through the prefix without a token term would leave the last
        # layer's MLP without a gradient; no stage does that, so the whole LLM counts here.)
        llm_ct = tokens_ct or (flow_ct and not stop)
        merged, deep = _vision(ledger, model.vision, shape, cotangent=llm_ct, deepstack=True)
        hidden = _llm(ledger, model.llm, shape, merged or deep, cotangent=llm_ct)
        supervised = config.data.get("max_supervised_tokens")
        _lm_head(ledger, model.llm, shape, hidden, cotangent=tokens_ct, supervised=supervised)
        _expert(ledger, model, shape, hidden and not stop, cotangent=flow_ct)
    return StepFlops(
        dict(ledger.components), shape, str(config.train.stage), remat, frozenset(ledger.weights)
    )
