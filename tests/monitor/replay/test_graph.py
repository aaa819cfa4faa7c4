"""The replay server's Resource Graph page size is set apart from its ARM page size, as the services differ."""

from __future__ import annotations

from pathlib import Path

from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.azure.resource_graph import GRAPH_PATH, ResourceGraphReader
from plmon.monitor.collect.plan import collect
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant

FAST = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "read_timeout": 5.0}


def _graph_collection(folder: Path, **server: int) -> tuple[int, int, int]:
    """(Resource Graph queries sent, ARM GETs sent, endpoints collected) for one collection."""
    with ReplayServer(folder, **server) as replay:
        live = LiveReader(StaticTokenCredential("t"), LiveSettings(arm_endpoint=replay.base_url,
                                                                    ca_bundle=replay.ca_bundle, **FAST))
        with ResourceGraphReader(live) as graph:
            inv = collect(graph, workers=4)
        graph_path = GRAPH_PATH.strip("/").lower()
        posts = [r for r in replay.requests if r.method == "POST" and r.path.strip("/").lower() == graph_path]
        gets = [r for r in replay.requests if r.method == "GET"]
        return len(posts), len(gets), inv.count("privateEndpoints")


def test_graph_page_size_pages_queries_alone(tmp_path):
    """graph_page_size=1000 serves each query in one page while ARM lists still page by page_size."""
    folder = tmp_path / "t"
    write_tenant(generate(SynthSpec(subscriptions=2, endpoints=60, seed=3)), folder)
    small_posts, small_gets, small_eps = _graph_collection(folder, page_size=10)
    big_posts, big_gets, big_eps = _graph_collection(folder, page_size=10, graph_page_size=1000)
    assert small_eps == big_eps >= 60
    assert small_gets == big_gets  # the ARM reads (targets, zone groups, links) are paged the same
    assert big_posts < small_posts
    assert small_posts >= big_posts + small_eps // 10 - 1  # the endpoints query alone paged by 10
