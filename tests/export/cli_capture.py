"""`alpamayo ...` in-process with its output captured (the export tests call the CLI many times)."""

import contextlib
import io

from alpamayo_jax import cli


def run_cli(argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `alpamayo *argv`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()
