"""A checkpoint's chat template: read from its directory and rendered as transformers renders it.

The prompt itself is built structurally (`text/prompt.py`: the same tokens every time, no Jinja at
planning time); the template is what a HuggingFace checkpoint declares its conversations look
like, so a converted release keeps it (`assets/chat_template.jinja`) and anything that must match
the PyTorch side (a new prompt layout, a check of ours against it) renders it here. Where a
directory keeps it, in the order transformers looks: `chat_template.jinja`, `chat_template.json`
(`{"chat_template": ...}`), then `tokenizer_config.json`'s `chat_template` (a string, or a list of
named templates of which "default" is taken).

Rendering uses the environment transformers uses (a sandbox, `trim_blocks` and `lstrip_blocks`,
`raise_exception`, `tojson`), so the same messages give the same text.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence

TEMPLATE_FILE = "chat_template.jinja"


class ChatTemplateError(ValueError):
    """A template file that cannot be read or a template that refuses the messages."""


def read_chat_template(directory: str | pathlib.Path) -> str | None:
    """The chat template a checkpoint directory declares, or None when it declares none."""
    directory = pathlib.Path(directory)
    if (directory / TEMPLATE_FILE).is_file():
        return (directory / TEMPLATE_FILE).read_text()
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = directory / name
        if not path.is_file():
            continue
        try:
            template = json.loads(path.read_text()).get("chat_template")
        except (ValueError, AttributeError) as err:
            raise ChatTemplateError(f"{path}: not a JSON object ({err})") from None
        if isinstance(template, list):  # named templates
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
            template = named.get("default")
        if template is not None:
            if not isinstance(template, str):
                raise ChatTemplateError(f"{path}: chat_template is not a string")
            return template
    return None


def render_chat(template: str, messages: Sequence[Mapping], **options) -> str:
    """The template applied to `messages` (`add_generation_prompt`, `tools`, ... as `options`)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ChatTemplateError(f"the chat template refuses these messages: {message}")

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=list(messages), **options)
    except TemplateError as err:
        raise ChatTemplateError(f"the chat template cannot be rendered: {err}") from None
