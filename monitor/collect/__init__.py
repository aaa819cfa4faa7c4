"""From a source to a snapshot: the only place raw ARM JSON lives.

``sources`` opens a recorded tenant (``recorded``) or live ARM (``azure/``); ``plan`` reads it into a
``RawInventory``; ``builder`` turns that into a :class:`~plmon.monitor.model.snapshot.Snapshot`. ``record`` and
``redact`` write a live tenant to disk. Next: ``plmon.monitor.scan`` hands the snapshot to ``plmon.checks``.
"""
