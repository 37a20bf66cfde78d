"""Checks of a training config that need more than `train.*`, run before any data is generated.

`training/loop.py` `validate_train_config` checks the `train` section alone. What depends on the
model, the devices, the dataset on disk or an earlier run is checked here, by `sft.prepare`, so a
config that cannot train fails in seconds with one line naming the field and what was expected
(`TrainConfigError`, exit code 2 of `alpamayo train`) instead of a traceback after minutes of data
generation or compilation.
"""

from __future__ import annotations

import math
import os
import pathlib

import jax
import ml_collections

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.shards import MANIFEST, ShardError, read_manifest
from alpamayo_jax.parallel.mesh import MeshError, resolve_shape
from alpamayo_jax.training.loop import TrainConfigError

DATA_PARALLEL_AXES = ("data", "fsdp")  # the mesh axes the batch rows are split over
# Special tokens of one training sequence besides the image delimiters (text/prompt.py): im_start x3,
# im_end x3, traj_history start/end, cot_start, cot_end, traj_future start/end.
SEQUENCE_SPECIAL_TOKENS = 12


def preflight(config: ml_collections.ConfigDict, *, num_devices: int | None = None) -> None:
    """Every check of this module, in the order a person would fix them."""
    check_image_size(config)
    check_max_tokens(config)
    check_mesh_and_batch(config, num_devices=num_devices)
    check_init_from(config)
    check_data_dir(config)


def _patch_unit(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    vision = config.model.vision
    patch, merge = int(vision.patch_size), int(vision.merge_size)
    return patch, merge, patch * merge


def check_image_size(config: ml_collections.ConfigDict) -> None:
    """Image sides must be whole numbers of merged ViT patches (patch_size x merge_size pixels)."""
    patch, merge, unit = _patch_unit(config)
    for name in ("image_height", "image_width"):
        value = int(config.data[name])
        if value <= 0 or value % unit:
            raise TrainConfigError(
                f"data.{name} must be a positive multiple of model.vision.patch_size x merge_size = "
                f"{patch} x {merge} = {unit} px, got {value}"
            )
    if int(config.data.image_multiple) != unit:
        raise TrainConfigError(
            f"data.image_multiple must be model.vision.patch_size x merge_size = {unit}, got "
            f"{config.data.image_multiple}"
        )


def min_sequence_tokens(config: ml_collections.ConfigDict) -> tuple[int, str]:
    """The fewest tokens a training sequence can have (no text at all), and how it adds up."""
    _, _, unit = _patch_unit(config)
    height, width = int(config.data.image_height), int(config.data.image_width)
    per_image = (height // unit) * (width // unit) + 2  # + vision_start, vision_end
    images = len(tuple(config.data.cameras)) * int(config.data.frames_per_camera)
    history, future = 3 * int(config.action.history_steps), 2 * int(config.action.future_steps)
    total = images * per_image + history + future + SEQUENCE_SPECIAL_TOKENS
    how = (
        f"{images} images x {per_image} + {history} history + {future} future trajectory tokens + "
        f"{SEQUENCE_SPECIAL_TOKENS} special tokens"
    )
    return total, how


def check_max_tokens(config: ml_collections.ConfigDict) -> None:
    """`data.max_tokens` must hold the images and trajectory of one sample before any text."""
    need, how = min_sequence_tokens(config)
    have = int(config.data.max_tokens)
    if have < need:
        raise TrainConfigError(
            f"data.max_tokens must be at least {need} ({how}), plus the prompt text and reasoning; got {have}"
        )


def check_mesh_and_batch(config: ml_collections.ConfigDict, *, num_devices: int | None = None) -> None:
    """The mesh fits the devices, and the global batch splits evenly over its data-parallel axes
    (else the batch would be replicated on every device: the memory of the whole batch on each)."""
    num_devices = jax.device_count() if num_devices is None else int(num_devices)
    axes, shape = tuple(config.mesh.axes), tuple(config.mesh.shape)
    if len(axes) != len(shape):
        raise TrainConfigError(
            f"mesh.shape {shape} must have one size per axis of mesh.axes {axes}, got {len(shape)} sizes"
        )
    try:
        resolved = resolve_shape(shape, num_devices)
    except MeshError:
        fixed = [s for s in shape if s != -1]
        if any(s == 0 or s < -1 for s in shape) or sum(s == -1 for s in shape) > 1:
            expected = "positive sizes with at most one -1"
        elif -1 in shape:
            expected = f"fixed sizes whose product ({math.prod(fixed)}) divides {num_devices}"
        else:
            expected = f"sizes whose product is {num_devices} (or one -1 to take the devices left)"
        raise TrainConfigError(
            f"mesh.shape {shape} does not fit the {num_devices} device(s) of this run: expected {expected}"
        ) from None
    sizes = dict(zip(axes, resolved))
    parallel = math.prod(sizes.get(a, 1) for a in DATA_PARALLEL_AXES)
    batch = int(config.train.batch_size)
    if batch % parallel:
        detail = " x ".join(f"{a} {sizes.get(a, 1)}" for a in DATA_PARALLEL_AXES)
        raise TrainConfigError(
            f"train.batch_size {batch} must be a multiple of the {parallel} data-parallel devices of "
            f"mesh.shape {tuple(resolved)} ({detail}); otherwise every device holds the whole batch"
        )


def check_init_from(config: ml_collections.ConfigDict) -> None:
    """`train.init_from` names a finished run: a directory with at least one checkpoint; a config
    that needs one (`train.requires_init`) has it."""
    source = config.train.init_from
    needs = str(config.train.get("requires_init", ""))
    if not source and needs:
        raise TrainConfigError(
            f"this config ({config.get('name', '?')}, stage {config.train.stage}) trains on top of the "
            f"weights of a run of {needs}: run `alpamayo train --config {needs} --workdir W` first, then "
            "pass --config.train.init_from=W (or --config.train.requires_init= to start from random weights)"
        )
    if not source:
        return
    root = pathlib.Path(os.path.expanduser(str(source)))
    if not root.is_dir():
        raise TrainConfigError(
            f"train.init_from {str(source)!r} does not exist; expected the --workdir of an earlier "
            "`alpamayo train` run"
        )
    checkpoints = root / "checkpoints"
    steps = [p for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
    if not steps:
        raise TrainConfigError(
            f"train.init_from {str(source)!r} holds no checkpoint; expected {checkpoints}/<step>/ "
            "written by `alpamayo train`"
        )


def check_data_dir(config: ml_collections.ConfigDict, splits: tuple[str, ...] = ("train", "val")) -> None:
    """A dataset given by `data.dir` has the images this config expects (cameras x frames, pixels).
    A missing directory or split is left to `world.dataset.resolve_dataset`, which says so."""
    if not config.data.dir:
        return
    root = pathlib.Path(os.path.expanduser(str(config.data.dir)))
    scene = SceneSpec.from_config(config)
    want = [scene.num_images, *scene.image_hw, 3]
    for split in splits:
        if not (root / split / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(root / split)
        except ShardError as err:
            raise TrainConfigError(str(err)) from None
        got = manifest.get("image_shape")
        if got is not None and list(got) != want:
            raise TrainConfigError(
                f"{root / split / MANIFEST}: images of shape {list(got)}, but the config expects {want} "
                "(len(data.cameras) x data.frames_per_camera, data.image_height, data.image_width, 3)"
            )
