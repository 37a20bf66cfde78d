"""A run directory, read and written: its config, its checkpoints' model variables and meta.

Everything that consumes a finished run (evaluation, planning, export, serving, the next training
stage) reads it through this package, so none of them depends on the training library.

```
<workdir>/config.json          the full config of the run (config.py)
<workdir>/assets/              action normalisation stats and tokenizer (assets.py)
<workdir>/checkpoints/<step>/  model, train, data, meta (checkpoint.py reads model and meta)
<workdir>/metrics.jsonl        one JSON record per logged step (training/metrics.py)
<workdir>/tensorboard/         the same scalars for TensorBoard
```
"""
