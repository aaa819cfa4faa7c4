"""Live ARM and Resource Graph through the Azure SDKs (the only SDK imports of collection).

``live`` (ARM reader), ``resource_graph``, ``credentials``, ``policies`` (read-only guard, retries), ``budget``
(read budget) and ``api_versions``. Both readers answer ``plan.ArmReader.get``, so ``collect.plan`` cannot tell
them from a recorded tenant.
"""
