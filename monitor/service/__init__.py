"""The always-on side (``plmon serve`` and the Azure Function): the ``daemon`` core, its worker threads
(``runtime``), targeted re-evaluation (``reevaluate``: re-read what an event touched, pick the checks that read
it), HTTP (``server``: Starlette routes + lifespan), Entra token checks (``entra``) and ``metrics``.
Events come in through ``plmon.monitor.events``; findings go to ``lifecycle/`` and then ``plmon.alerts``.
"""
