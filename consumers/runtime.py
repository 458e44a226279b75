"""Process-level tuning shared by the long-running commands."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Account states are acyclic tuples; the default thresholds make the cyclic collector rescan a
    heap of millions of them every few thousand allocations, work that finds nothing to free. Move what
    exists now out of its reach and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def freeze_survivors() -> None:
    """Move every object alive now out of the cyclic collector's reach, at a quiet point (every few
    thousand events, after a committed batch). What survives there is account state: acyclic, freed by
    reference counting when replaced, so rescanning it from generation to generation is pure cost,
    and a cost that grows with the accounts held. Garbage in cycles made since the last freeze is collected
    first (only the objects made since then are scanned: frozen ones are not), or it would be frozen with the
    survivors and never freed: a service that freezes after every batch then grows without bound."""
    gc.collect()
    gc.freeze()
