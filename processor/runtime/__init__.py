"""The runtime that runs the pipeline's stages in one process: the wiring and shutdown
order (``app``), checkpoints, rebalances, start-up against servers that may not answer,
and the garbage collector's tuning. The worker processes of ``--workers`` are
:mod:`processor.workers`; the HTTP endpoints and lag sampling, :mod:`processor.observe`.
"""
