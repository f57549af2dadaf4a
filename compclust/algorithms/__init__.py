"""One module per family of algorithms. Each family supplies the epoch that ``compclust.loop``
scans: ``(state, data, hparams, key) -> (state, epoch metrics)``; the driver (fit, sweep, chunks,
validation) exists once in ``loop.py``."""
