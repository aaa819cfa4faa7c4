"""What a scan's findings change over time: ``transitions`` writes open/reopen/escalate/remind/resolve with
their outbox rows in one ``ChangeSet``; ``observations`` remembers when a connection status was first seen;
``compliance`` computes the per-scan figures. Next: ``plmon.alerts.delivery`` sends the outbox rows.
"""
