"""From a source to a snapshot: the only place raw ARM JSON lives, and only until each read is parsed.

``sources`` opens a recorded tenant (``recorded``) or live ARM (``azure/``); ``plan`` reads it unit by unit,
``builder`` parses each unit's body as it arrives into typed records (``inventory``) and links them into a
:class:`~plmon.monitor.model.snapshot.Snapshot`. ``record`` and ``redact`` write a live tenant to disk. Next:
``plmon.monitor.scan`` hands the snapshot to ``plmon.checks``.
"""
