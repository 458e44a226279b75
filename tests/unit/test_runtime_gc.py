"""Freezing the survivors of a batch must not freeze the batch's cyclic garbage with them."""

from __future__ import annotations

import gc
import weakref

from consumers.runtime import freeze_survivors


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_cyclic_garbage_made_before_a_freeze_is_freed() -> None:
    """A cycle dropped before `freeze_survivors` is gone after it (the soak saw RSS grow without bound when every
    batch's cycles were frozen)."""
    gc.disable()  # no automatic collection may free it first
    try:
        node = _Node()
        ref = weakref.ref(node)
        del node
        freeze_survivors()
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.enable()
