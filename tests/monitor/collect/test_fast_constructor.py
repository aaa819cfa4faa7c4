"""The builder's fast constructors make the very records the classes' own ``__init__`` makes."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field, fields

import pytest

from plmon.monitor.collect import builder
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import ConsumerConnection, Nic, PrivateEndpoint, Target

PE = parse_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe")


@pytest.mark.parametrize("cls, kwargs", [
    (PrivateEndpoint, {"id": PE, "name": "pe", "type": "t", "subnet_id": PE, "ip_addresses": ("10.0.0.4",)}),
    (Target, {"id": PE, "name": "pe", "type": "t", "state": "read", "public_network_access": False}),
    (Nic, {"id": PE, "name": "n", "type": "t", "location": "westeurope", "enable_ip_forwarding": True}),
    (ConsumerConnection, {"id": PE, "name": "c", "endpoint_id": PE, "manual": False, "target_id": None,
                          "group_ids": ("blob",), "status": "Approved", "description": None,
                          "actions_required": None, "request_message": None}),
])
def test_a_fast_constructor_makes_the_class_own_record(cls: type, kwargs: dict[str, object]) -> None:
    """Same fields, defaults and default factories (tags), equal; still frozen."""
    made = builder._fast_constructor(cls)(**kwargs)
    own = cls(**kwargs)
    assert type(made) is cls
    assert made == own and repr(made) == repr(own)
    assert all(getattr(made, f.name) == getattr(own, f.name) for f in fields(cls))
    with pytest.raises(FrozenInstanceError):
        made.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        builder._fast_constructor(cls)(**kwargs, unknown=1)


def test_a_class_it_cannot_fill_directly_is_kept() -> None:
    """A __post_init__ (or no slots) keeps the class's own __init__."""

    @dataclass(frozen=True, slots=True)
    class Checked:
        x: int
        ys: list[int] = field(default_factory=list)

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("x")

    assert builder._fast_constructor(Checked) is Checked
