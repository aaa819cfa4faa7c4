"""Event Grid in: parse a webhook body (``parse``) and decide which events matter (``relevance``).

Where an event goes: ``service/server.py`` (HTTP) -> ``service/daemon.py::Daemon.accept`` (``parse.parse_body``)
-> ``state/intake.py`` (durable queue) -> ``service/runtime.py`` worker -> ``Daemon._step`` (``relevance``,
``parse.coalesce``) -> ``service/reevaluate.py`` (re-read, targeted checks) -> ``lifecycle/transitions.py``
(transitions + outbox rows) -> ``plmon/alerts/delivery.py``.
"""
