"""`tools/make_pai_fixture.py` as a module, for the tests that build a tiny PhysicalAI-AV copy."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "make_pai_fixture.py"


def pai_fixture_tool():
    """The fixture writer module (loaded once; `make_fixture(out, clips=...)` writes a copy)."""
    if "make_pai_fixture" in sys.modules:
        return sys.modules["make_pai_fixture"]
    spec = importlib.util.spec_from_file_location("make_pai_fixture", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
