"""The plain evaluation's fifth-round shortcuts (issue 14, scanrest lane) give what the general code gives, on every
tenant the repository holds or the tests build (tests/kit/tenant_catalog.py): views whose status and target are
derived once when made, the unrolled actions test, the duplicate-groups pass without a generator per endpoint, each()
without generators, and templates quoted once."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from checkkit import snapshot_of
from tenant_catalog import TENANTS

from plmon.checks import connection, dns, links, public_access, remedy, units
from plmon.checks.links import ConnectionView
from plmon.monitor.model.snapshot import lower


@pytest.fixture(scope="module", params=sorted(TENANTS))
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TENANTS[request.param](tmp_path_factory.mktemp("tenant"))


def _views(folder: Path) -> list[ConnectionView]:
    snap = snapshot_of(folder)
    return [v for views in links.plain_views(snap).values() for v in views]


def test_a_views_derived_status_and_target_are_what_its_entries_say(folder: Path) -> None:
    """status_key is lower(status) ("" for none); target_id the consumer's target, else the provider's owner; a view
    made by the fast maker equals (and derives the same as) one made by the class."""
    for v in _views(folder):
        assert v.status_key == lower(v.status)
        want = v.consumer.target_id if v.consumer is not None and v.consumer.target_id is not None else (
            v.provider.owner_id if v.provider is not None else None)
        assert v.target_id == want
        made = ConnectionView(v.endpoint_id, v.endpoint, v.consumer, v.provider)
        assert made == v and (made.status_key, made.target_id) == (v.status_key, v.target_id)


def test_the_unrolled_actions_test_is_the_generators(folder: Path) -> None:
    """connection._has_actions: the same verdict as any() over both entries, for every view."""
    for v in _views(folder):
        assert connection._has_actions(v) == any(
            (value := c.actions_required) and lower(value) != "none" for c in (v.consumer, v.provider) if c is not None)


def test_duplicate_groups_in_one_pass_are_the_groups_of_each_endpoint(folder: Path) -> None:
    """dns._duplicate_groups: the groups (and members) of every endpoint's _groups_in, those of two endpoints or
    more, in text order."""
    snap = snapshot_of(folder)
    members: dict[str, list[str]] = {}
    for key in snap.private_endpoints:
        for group in dict.fromkeys(dns._groups_in(links.views_of(snap, key))):
            members.setdefault(group, []).append(key)
    want = [(g, tuple(sorted(keys))) for g, keys in sorted(members.items()) if len(keys) > 1]
    assert list(dns._duplicate_groups(snap)) == want


def test_each_in_a_plain_evaluation_is_each_items_records(folder: Path) -> None:
    """units.each of one collection, with no subjects recorded and no focus: the records each_item yields, in order."""
    snap = snapshot_of(folder)
    for name in units.RECORDS:
        assert list(units.each(snap, name)) == [r for _, r in units.each_item(snap, name)], name


@pytest.mark.parametrize("value", ["/subscriptions/s/resourceGroups/rg/providers/X/y/a b", "it's $(x) `y` *", "{id}"])
def test_a_template_filled_from_its_plan_is_the_template_split_filled_and_quoted(value: str) -> None:
    """remedy.fill: shlex.join of every argument formatted, for every public-access template and hostile values."""
    for rule in public_access.RULES.values():
        want = shlex.join([part.format(id=value) for part in shlex.split(rule.remediation)])
        assert remedy.fill(rule.remediation, id=value) == want
