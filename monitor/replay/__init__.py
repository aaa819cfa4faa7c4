"""Azure without Azure: the replay ARM + Resource Graph server (``server``, ``graph``) and synthetic tenants
(``synth``). Tooling for demos, tests and the benchmark; only ``plmon.monitor.cli`` imports it.
"""
