"""Load a Python config file and apply `--config.a.b=value` overrides.

Configs are plain Python files exposing `get_config() -> ConfigDict` (see `configs/`), or a run's
saved `config.json` (a workdir's, e.g. a converted release's: `--config W/config.json` trains or
fine-tunes the same model; a relative `text.tokenizer_path` in it is read from W). Overrides are
typed by the field they replace, so `--config.train.steps=200` stays an int and a typo is an error
that lists the closest existing keys instead of silently creating a new field.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
from collections.abc import Iterable, Sequence

import ml_collections

OVERRIDE_PREFIX = "--config."


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message names the key."""


def json_tuples(value):
    """A config read from JSON with its sequences as tuples (JSON has none; configs use them for
    every sequence)."""
    if isinstance(value, dict):
        return {k: json_tuples(v) for k, v in value.items()}
    return tuple(json_tuples(v) for v in value) if isinstance(value, list) else value


def load_json_config(path: pathlib.Path) -> ml_collections.ConfigDict:
    """A run's saved config.json as a config (sequences as tuples, paths made absolute)."""
    import json

    try:
        config = ml_collections.ConfigDict(json_tuples(json.loads(path.read_text())))
    except ValueError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {err}") from None
    tokenizer = config.get("text", {}).get("tokenizer_path")
    if tokenizer and not pathlib.Path(tokenizer).is_absolute():
        config.text.tokenizer_path = str((path.parent / tokenizer).absolute())
    return config


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Import `path` as a module and return its `get_config()` (or read a run's config.json)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.suffix == ".json":
        return load_json_config(path)
    spec = importlib.util.spec_from_file_location(f"_alpamayo_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {str(path)!r} defines no get_config()")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {str(path)!r} must return an ml_collections.ConfigDict")
    return config


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in config.items():
        full = f"{prefix}{name}"
        keys.append(full)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(_all_keys(value, full + "."))
    return keys


_TYPE_NAMES = {bool: "a bool", int: "an int", float: "a float", str: "a str"}


def _check_elements(key: str, text: str, current: tuple | list, value: tuple | list):
    """A sequence override keeps the element type of a homogeneous current value: `(2, 1.5, 1)` for
    an int tuple is an error, not a mesh of 1.5 devices; ints for floats become floats."""
    kinds = {type(v) for v in current}
    if len(kinds) != 1 or (kind := kinds.pop()) not in _TYPE_NAMES:
        return value
    out = []
    for i, item in enumerate(value):
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            item = float(item)
        if type(item) is not kind:
            raise ConfigError(
                f"--config.{key} expects a {type(current).__name__} of {kind.__name__}s, got {text!r} "
                f"(item {i} is {_TYPE_NAMES.get(type(item), type(item).__name__)})"
            )
        out.append(item)
    return type(value)(out)


def _is_optional(node: ml_collections.ConfigDict, part: str) -> bool:
    """Whether `node.part` is a typed FieldReference (declared with a type, None allowed)."""
    field = dict(node.items(preserve_field_references=True))[part]
    return isinstance(field, ml_collections.FieldReference)


def _parse_value(key: str, text: str, current, declared: type | None = None):
    """Parse `text` into the type of `current` (the value being overridden); `declared` is the
    type of a typed field whose value is None (e.g. `data.dir`, a str or None)."""
    if current is None and declared is str:
        return None if text in ("None", "none", "") else text
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key} expects a bool (true/false), got {text!r}")
    if isinstance(current, str):
        return text
    if current is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise ConfigError(f"--config.{key} expects a {type(current).__name__}, got {text!r}") from err
    if isinstance(value, bool) and not isinstance(current, bool):
        raise ConfigError(
            f"--config.{key} expects {_TYPE_NAMES.get(type(current), 'a ' + type(current).__name__)}, "
            f"got the bool {text!r}"
        )
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (int, float, str)):
        value = type(current)([value])
    if not isinstance(value, type(current)):
        raise ConfigError(f"--config.{key} expects a {type(current).__name__}, got {text!r}")
    if isinstance(current, (tuple, list)):
        value = _check_elements(key, text, current, value)
    return value


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Set `config.<key>` from the string `text`; unknown keys raise with close matches."""
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts):
        is_last = depth == len(parts) - 1
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = _all_keys(config)
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join('config.' + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key 'config.{key}'{hint}")
        if is_last:
            current = node[part]
            if isinstance(current, ml_collections.ConfigDict):
                raise ConfigError(f"config.{key} is a section; set one of its fields instead")
            declared = None
            if current is None:
                try:
                    declared = node.get_ref(part).get_type()
                except Exception:  # a plain None field: any literal goes
                    declared = None
            if text in ("None", "none") and _is_optional(node, part):
                value = None  # a typed optional field (e.g. data.max_supervised_tokens) switched off
            else:
                value = _parse_value(key, text, current, declared)
            with node.unlocked():
                try:
                    node[part] = value
                except TypeError:
                    kind = declared.__name__ if declared is not None else type(current).__name__
                    raise ConfigError(f"--config.{key} expects a {kind}, got {text!r}") from None
        else:
            node = node[part]


def parse_overrides(args: Sequence[str]) -> list[tuple[str, str]]:
    """Split `--config.a.b=v` / `--config.a.b v` arguments into (key, text) pairs."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith(OVERRIDE_PREFIX):
            raise ConfigError(f"unrecognised argument {arg!r}; overrides look like --config.train.steps=200")
        body = arg[len(OVERRIDE_PREFIX) :]
        if "=" in body:
            key, text = body.split("=", 1)
        elif i + 1 < len(args):
            key, text = body, args[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {arg!r} has no value")
        pairs.append((key, text))
        i += 1
    return pairs


def load_config(
    path: str | pathlib.Path, overrides: Iterable[tuple[str, str]] | Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """Load `path` and apply overrides (pairs, or raw `--config.x=y` strings)."""
    config = load_config_file(path)
    overrides = list(overrides)
    if overrides and isinstance(overrides[0], str):
        overrides = parse_overrides(overrides)
    for key, text in overrides:
        apply_override(config, key, text)
    config.lock()
    return config
