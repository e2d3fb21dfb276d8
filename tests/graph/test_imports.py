"""The Graph wing imports in one direction: no module of fleetbox.graph imports another in a circle
(type-checking imports included), the simulator's routes included."""

from __future__ import annotations

import grimp


def test_no_import_cycle_in_the_graph_wing() -> None:
    graph = grimp.build_graph("fleetbox")
    modules = sorted(m for m in graph.modules if m.startswith("fleetbox.graph"))
    cycles = [
        (a, b) for a in modules for b in modules if a < b and graph.chain_exists(a, b) and graph.chain_exists(b, a)
    ]
    assert cycles == []
