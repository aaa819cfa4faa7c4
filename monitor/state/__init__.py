"""What plmon remembers: the store's records and protocol (``store``), its SQLite and Table Storage backends
(``sqlite``, ``tables``), the durable event intake queue (``intake``, ``intake_tables``) and ``open``, the one
place that opens them from a URL. Written by ``lifecycle/`` and the service; read by reports and the CLI.
The outbox table and its lease are here (``store.OutboxRow``, ``StateStore.claim_due``).
"""
