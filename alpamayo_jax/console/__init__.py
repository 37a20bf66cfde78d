"""What people see on the console while a long command runs.

`progress` is the one progress indicator of the package: a tqdm bar on a terminal, and one plain
line about every ten seconds when the output goes to a log (CI, `make demo > log`, nohup), where
a bar's carriage-return redraws would fill the file with megabytes of half-drawn bars.
"""

from alpamayo_jax.console.progress import Progress, progress

__all__ = ["Progress", "progress"]
