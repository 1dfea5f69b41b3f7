"""connector/ingest/gcpause.py: the collector is off while a batch is built and on again after,
whatever happens in the batch; a pause inside a pause does not end the outer one."""

from __future__ import annotations

import gc

import pytest

from connector.ingest.gcpause import gc_paused


def test_the_collector_is_paused_for_the_batch_and_resumed_after_an_error_too():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause did not end the outer one
        raise RuntimeError("the batch failed")
    assert gc.isenabled()
