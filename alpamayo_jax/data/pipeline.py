"""Samples -> model batches with grain: shuffled, sharded per host, multi-process, resumable.

    source (Sample per index) -> this host's shard -> shuffle(seed, reshuffled every epoch)
      -> repeat -> encode (history/future bins, normalised actions, chat tokens, padding)
      -> batch(drop_remainder) -> [worker processes] -> BatchIterator (get_state / set_state)
      -> models.batch.Batch

Every step before the workers is index arithmetic on a grain `MapDataset`, so batch k of a given
(seed, shard, batch size) is the same whatever happened before: the iterator state is a few
integers (JSON), and restoring it resumes on exactly the next batch. Worker processes do not change
the batches, only who computes them (but a state saved with N workers restores only with N).

The iterator yields `models.batch.Batch` objects with numpy leaves (leading axis B; the fields,
their shapes and units are documented there). Inside grain an example and a batch are dicts with
the same keys (`SampleEncoder.map`); the iterator turns each batch dict into a `Batch` at the end.

Typical use (one host of a training job):

    reader = ShardReader(dataset_dir, "train")
    tokenizer = dataset_tokenizer(config, reader, dataset_dir)
    encoder = encoder_from_config(config, tokenizer)
    batches = iterator_from_config(config, reader, encoder, batch_size=global_batch // processes)
    state = batches.get_state()   # JSON; stored with the checkpoint, given back to set_state()
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import grain
import ml_collections
import numpy as np
from jaxtyping import Float

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.decisions import decision_id
from alpamayo_jax.models.batch import Batch, check_supervised
from alpamayo_jax.models.vision_reducer import llm_tokens_per_image
from alpamayo_jax.text.prompt import (
    PromptBuilder,
    prompt_options,
    prompt_text_segments,
)
from alpamayo_jax.text.tokenizer import TOKENIZER_FILE, TextTokenizer, load_or_train_tokenizer

STATE_VERSION = 1


class SampleLike(Protocol):
    """What the pipeline reads of a `data.schema.Sample`."""

    images: np.ndarray
    history_xyz: np.ndarray
    v0: Any
    future_xyz: np.ndarray
    future_heading: np.ndarray
    future_actions: np.ndarray
    decision: str
    hard: bool
    coc: str
    clip_id: str


class SampleSource(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> SampleLike: ...


# -- one sample -> one example ------------------------------------------------------------------


class _TrajectoryBins:
    """`trajectory.tokenize` (jnp) jitted once per process on the host CPU.

    The data path must never touch the accelerator: in worker processes JAX is pinned to CPU by
    `_cpu_only_worker`, in the main process the jitted call runs under `jax.default_device(cpu)`.
    The jitted function is rebuilt after unpickling (it cannot cross a process boundary).
    """

    def __init__(self, tokens: ml_collections.ConfigDict):
        self._tokens = dict(tokens.to_dict())
        self._fn = None

    def __getstate__(self):
        return {"_tokens": self._tokens, "_fn": None}

    def __call__(self, history_xyz: np.ndarray, actions_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import jax

        from alpamayo_jax.trajectory.tokenize import encode_future, encode_history

        if self._fn is None:
            cfg = types.SimpleNamespace(**self._tokens)
            self._cpu = jax.local_devices(backend="cpu")[0]
            self._fn = jax.jit(lambda h, a: (encode_history(h, cfg), encode_future(a, cfg)))
        with jax.default_device(self._cpu):
            history, future = self._fn(history_xyz, actions_norm)
        return np.asarray(history), np.asarray(future)


class SampleEncoder(grain.transforms.Map):
    """(index, Sample) -> one example: a dict of the fields of `models.batch.Batch`, without the
    leading batch axis."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        tokenizer: TextTokenizer,
        images: SceneSpec,
        *,
        max_tokens: int,
        tokens_per_image: int,
    ):
        text = config.text
        self.images = images
        self.max_tokens = int(max_tokens)
        supervised = config.data.get("max_supervised_tokens")
        self.max_supervised = None if supervised is None else int(supervised)
        self.future_steps = int(config.action.future_steps)
        self.history_steps = int(config.action.history_steps)
        self.include_reasoning = bool(text.include_reasoning)
        self.mean = np.asarray(config.action.mean, np.float32)
        self.std = np.asarray(config.action.std, np.float32)
        if self.mean.shape != (2,) or self.std.shape != (2,) or not (self.std > 0).all():
            raise ValueError(
                f"config.action.mean/std must be 2 values each with std > 0, got "
                f"{tuple(config.action.mean)} / {tuple(config.action.std)}"
            )
        self.pad_id = tokenizer.layout.pad_id
        self.builder = PromptBuilder(
            tokenizer,
            camera_names=images.camera_names,
            frames_per_camera=images.frames_per_camera,
            tokens_per_image=tokens_per_image,
            history_tokens=3 * self.history_steps,
            future_tokens=2 * self.future_steps,
            system_prompt=text.system_prompt,
            instruction=text.instruction,
            **prompt_options(text),
        )
        if self.builder.prompt_length + 2 * self.future_steps + 4 > self.max_tokens:
            raise ValueError(
                f"config.data.max_tokens is {self.max_tokens} but the prompt alone takes "
                f"{self.builder.prompt_length} tokens (+{2 * self.future_steps + 4} for the trajectory)"
            )
        self._bins = _TrajectoryBins(config.tokens)

    def map(self, element: tuple[int, SampleLike]) -> dict[str, np.ndarray]:
        index, sample = element
        name = f"sample {index} (clip {getattr(sample, 'clip_id', '?')!r})"
        images = np.asarray(sample.images)
        spec = self.images
        want = (spec.num_images, *spec.image_hw, 3)
        if images.shape != want or images.dtype != np.uint8:
            raise ValueError(f"{name}: images are {images.dtype} {images.shape}, expected uint8 {want}")
        actions = np.asarray(sample.future_actions, np.float32)
        if actions.shape != (self.future_steps, 2):
            raise ValueError(
                f"{name}: future_actions has shape {actions.shape}, expected ({self.future_steps}, 2)"
            )
        history_xyz = np.asarray(sample.history_xyz, np.float32)
        if history_xyz.shape != (self.history_steps, 3):
            raise ValueError(
                f"{name}: history_xyz has shape {history_xyz.shape}, expected ({self.history_steps}, 3)"
            )
        actions_norm = (actions - self.mean) / self.std
        history_bins, future_bins = self._bins(history_xyz, actions_norm)
        coc = sample.coc if self.include_reasoning else ""
        try:
            seq = self.builder.training_sequence(history_bins, coc, future_bins)
            decision = decision_id(sample.decision)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err
        length = len(seq.tokens)
        if length > self.max_tokens:
            raise ValueError(
                f"{name} needs {length} tokens (its CoC {length - self.builder.sequence_length(0)}) "
                f"but config.data.max_tokens is {self.max_tokens}"
            )
        check_supervised(int(np.count_nonzero(seq.loss_mask)), self.max_supervised, name)
        tokens = np.full(self.max_tokens, self.pad_id, np.int32)
        tokens[:length] = seq.tokens
        loss_mask = np.zeros(self.max_tokens, np.float32)
        loss_mask[:length] = seq.loss_mask
        return {
            "images": images,
            "tokens": tokens,
            "valid": np.arange(self.max_tokens) < length,
            "loss_mask": loss_mask,
            "prefix_len": np.int32(seq.prefix_len),
            "cot_start": np.int32(seq.cot_start),
            "actions_norm": actions_norm,
            "history_xyz": history_xyz,
            "v0": np.float32(sample.v0),
            "future_xyz": np.asarray(sample.future_xyz, np.float32),
            "future_heading": np.asarray(sample.future_heading, np.float32),
            "decision_id": np.int32(decision),
            "hard": np.bool_(sample.hard),
            "sample_index": np.int32(index),
        }


# -- the dataset ----------------------------------------------------------------------------------


class _Indexed:
    """A source whose records come with their own index (for error messages and `sample_index`)."""

    def __init__(self, source: SampleSource):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> tuple[int, SampleLike]:
        return int(index), self._source[int(index)]


def shard_range(num_records: int, shard: grain.sharding.ShardOptions) -> tuple[int, int]:
    """[start, stop) of this shard's records: contiguous, disjoint, covering the source (or, with
    `drop_remainder`, all of equal size so every host makes the same number of batches)."""
    per, rest = divmod(num_records, shard.shard_count)
    if shard.drop_remainder:
        start, stop = shard.shard_index * per, (shard.shard_index + 1) * per
    else:
        start = shard.shard_index * per + min(shard.shard_index, rest)
        stop = start + per + (shard.shard_index < rest)
    if stop <= start:
        raise ValueError(
            f"shard {shard.shard_index} of {shard.shard_count} is empty: the source has only "
            f"{num_records} records"
        )
    return start, stop


def make_dataset(
    source: SampleSource,
    encoder: SampleEncoder,
    *,
    batch_size: int,
    seed: int,
    shard: grain.sharding.ShardOptions,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
) -> grain.MapDataset:
    """The batched MapDataset of one host (no workers yet); `num_epochs=None` repeats forever."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    start, stop = shard_range(len(source), shard)
    ds = grain.MapDataset.source(_Indexed(source))[start:stop]
    if shuffle:
        ds = ds.shuffle(seed=seed % 2**32)
    ds = ds.repeat(num_epochs)
    ds = ds.map(encoder)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def _cpu_only_worker(worker_index: int, worker_count: int) -> None:
    """Data workers compute on the host CPU only (never claim the host's accelerator)."""
    del worker_index, worker_count
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_platforms", "cpu")


class BatchIterator(Iterator[Batch]):
    """Iterates `Batch`es (numpy leaves); `get_state()` is a JSON-able dict, `set_state()` resumes on the next batch.

    The state also records what fixes the batch order (seed, shard, batch size, workers, source
    length); restoring into a pipeline that differs in any of them is an error naming the field.
    """

    def __init__(
        self,
        dataset: grain.MapDataset,
        fingerprint: dict[str, Any],
        *,
        worker_count: int = 0,
        read_threads: int = 1,
        prefetch: int = 2,
    ):
        self.fingerprint = dict(fingerprint, worker_count=int(worker_count))
        iter_ds = dataset.to_iter_dataset(
            grain.ReadOptions(num_threads=int(read_threads), prefetch_buffer_size=int(prefetch))
        )
        if worker_count > 0:
            from absl import flags

            if not flags.FLAGS.is_parsed():  # grain reads absl flags; plain scripts never parse them
                flags.FLAGS.mark_as_parsed()
            iter_ds = iter_ds.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=int(worker_count), per_worker_buffer_size=int(prefetch)
                ),
                worker_init_fn=_cpu_only_worker,
            )
        self._iterator = iter(iter_ds)

    def __next__(self) -> Batch:
        return Batch(**next(self._iterator))

    def get_state(self) -> dict[str, Any]:
        state = {"version": STATE_VERSION, "pipeline": self.fingerprint, "grain": self._iterator.get_state()}
        json.dumps(state)  # fail here, not in the checkpoint writer, if grain ever returns non-JSON
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"data iterator state must be a dict of version {STATE_VERSION}, got {str(state)[:120]}"
            )
        saved = state["pipeline"]
        for key in sorted(set(saved) | set(self.fingerprint)):
            if saved.get(key) != self.fingerprint.get(key):
                raise ValueError(
                    f"data iterator state was saved with {key}={saved.get(key)!r}, this pipeline has "
                    f"{key}={self.fingerprint.get(key)!r}"
                )
        self._iterator.set_state(state["grain"])

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_batch_iterator(
    source: SampleSource,
    encoder: SampleEncoder,
    *,
    batch_size: int,
    seed: int,
    shard: grain.sharding.ShardOptions | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    worker_count: int = 0,
    read_threads: int = 1,
    prefetch: int = 2,
) -> BatchIterator:
    """Training: defaults (shuffled, endless, full batches). Eval: `shuffle=False, num_epochs=1,
    drop_remainder=False`. `shard` defaults to this JAX process's slice (`ShardByJaxProcess`)."""
    if shard is None:
        shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    dataset = make_dataset(
        source, encoder, batch_size=batch_size, seed=seed, shard=shard, shuffle=shuffle,
        num_epochs=num_epochs, drop_remainder=drop_remainder,
    )  # fmt: skip
    fingerprint = {
        "records": len(source),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "shard_index": int(shard.shard_index),
        "shard_count": int(shard.shard_count),
        "shard_drop_remainder": bool(shard.drop_remainder),
        "shuffle": bool(shuffle),
        "num_epochs": num_epochs,
        "drop_remainder": bool(drop_remainder),
        "max_tokens": encoder.max_tokens,
    }
    return BatchIterator(
        dataset, fingerprint, worker_count=worker_count, read_threads=read_threads, prefetch=prefetch
    )


def encoder_from_config(
    config: ml_collections.ConfigDict, tokenizer: TextTokenizer, images: SceneSpec | None = None
) -> SampleEncoder:
    """The encoder of `config`: image tokens from `config.model.vision` (patch_size, merge_size),
    length from `config.data.max_tokens`, cameras from `config.data` unless `images` is given."""
    images = images or SceneSpec.from_config(config)
    vision = config.model.vision
    per_image = llm_tokens_per_image(vision, *images.image_hw, images.num_images)
    tokenizer.check_model_vocab_size(config.model.llm.vocab, what="config.model.llm.vocab")
    return SampleEncoder(
        config, tokenizer, images, max_tokens=int(config.data.max_tokens), tokens_per_image=per_image
    )


def iterator_from_config(
    config: ml_collections.ConfigDict,
    source: SampleSource,
    encoder: SampleEncoder,
    *,
    batch_size: int,
    train: bool = True,
    shard: grain.sharding.ShardOptions | None = None,
) -> BatchIterator:
    """Training (shuffled with `config.seed`, endless, full batches) or evaluation (in order, one
    pass, last batch partial) batches of this host; loader parallelism from `config.data.pipeline_*`."""
    data = config.data
    return make_batch_iterator(
        source, encoder, batch_size=batch_size, seed=int(config.seed), shard=shard, shuffle=train,
        num_epochs=None if train else 1, drop_remainder=train, worker_count=int(data.pipeline_workers),
        read_threads=int(data.pipeline_threads), prefetch=int(data.pipeline_prefetch),
    )  # fmt: skip


def process_shard_options(process_index: int, process_count: int) -> grain.sharding.ShardOptions:
    """This process's share of a split's records (each process reads a disjoint part)."""
    return grain.sharding.ShardOptions(
        shard_index=process_index, shard_count=process_count, drop_remainder=True
    )


# -- dataset-level helpers -----------------------------------------------------------------------


def action_stats(
    source: SampleSource, *, max_samples: int | None = None, min_std: float = 1e-4
) -> tuple[Float[np.ndarray, " 2"], Float[np.ndarray, " 2"]]:
    """Per-dimension (accel, curvature) mean and std over a dataset's future actions.

    Stored with the checkpoint as `config.action.mean/std`. Accumulated in float64 over evenly spaced
    records (all of them by default); std is floored at `min_std` so a constant dimension cannot
    divide by zero.
    """
    n = len(source)
    if n == 0:
        raise ValueError("action_stats: the source is empty")
    count = n if max_samples is None else max(1, min(n, int(max_samples)))
    indices = np.unique(np.linspace(0, n - 1, count).round().astype(int))
    total = np.zeros(2)
    total_sq = np.zeros(2)
    steps = 0
    for index in indices:
        actions = np.asarray(source[int(index)].future_actions, np.float64).reshape(-1, 2)
        if not np.isfinite(actions).all():
            raise ValueError(f"action_stats: sample {index} has non-finite future_actions")
        total += actions.sum(0)
        total_sq += (actions**2).sum(0)
        steps += len(actions)
    mean = total / steps
    std = np.sqrt(np.maximum(total_sq / steps - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, min_std).astype(np.float32)


def tokenizer_corpus(
    source: SampleSource,
    config: ml_collections.ConfigDict,
    camera_names: Sequence[str],
    *,
    max_samples: int = 20000,
) -> list[str]:
    """CoC texts of (up to `max_samples` evenly spaced) records plus the prompt's text pieces,
    repeated as often as they occur in training so BPE merges them like the CoC."""
    n = len(source)
    indices = np.unique(np.linspace(0, n - 1, min(n, max_samples)).round().astype(int)) if n else []
    cocs = [source[int(i)].coc for i in indices]
    text = config.text
    segments = list(
        prompt_text_segments(
            text.system_prompt,
            text.instruction,
            camera_names,
            frames_per_camera=int(config.data.frames_per_camera),
            **prompt_options(text),
        ).values()
    )
    return [c for c in cocs if c] + segments * max(2, len(cocs))


def dataset_tokenizer(
    config: ml_collections.ConfigDict,
    source: SampleSource,
    dataset_dir: str | os.PathLike,
    camera_names: Sequence[str] | None = None,
) -> TextTokenizer:
    """The tokenizer of a dataset: synthetic mode trains it once on `source`'s text (the train split)
    and keeps it as `tokenizer.json` in `dataset_dir` (the dataset root, beside the split
    directories) or at `config.text.tokenizer_path`; qwen mode loads `config.text.tokenizer_path`.
    Camera names default to `config.data.cameras`. Training should copy the result into its workdir
    (`tokenizer.save`) so inference reads the very same file."""
    if camera_names is None:
        camera_names = tuple(config.data.cameras)
    path = config.text.tokenizer_path or os.path.join(os.fspath(dataset_dir), TOKENIZER_FILE)
    corpus: Callable[[], list[str]] = lambda: tokenizer_corpus(source, config, camera_names)  # noqa: E731
    return load_or_train_tokenizer(config, path, corpus)
