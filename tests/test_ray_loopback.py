"""The embedded Ray talks over loopback: its node's address, and the address its workers see, are in
127.0.0.0/8 (`ray.node_ip_address`, default 127.0.0.2), never the host's network address."""

from __future__ import annotations

import ipaddress

from carve.core.config import RayConfig


def test_embedded_ray_node_is_on_loopback(ray_local):
    ray = ray_local

    @ray.remote
    def seen() -> str:
        return ray.util.get_node_ip_address()

    nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
    assert nodes and all(ipaddress.ip_address(a).is_loopback for a in nodes), nodes
    worker = ray.get(seen.remote())
    assert ipaddress.ip_address(worker).is_loopback, worker
    assert RayConfig().node_ip_address == worker == "127.0.0.2"
