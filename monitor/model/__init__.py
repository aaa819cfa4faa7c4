"""What plmon knows about a tenant: ARM ids (``arm_id``) and the frozen snapshot records (``snapshot``).

No I/O here. ``collect/`` builds a :class:`~plmon.monitor.model.snapshot.Snapshot`; ``plmon.checks`` reads it.
"""
