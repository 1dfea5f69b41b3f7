from __future__ import annotations

import pytest

from tests.conftest import login


@pytest.fixture
def user_client(client, teammate):
    """A signed-in staff member (no admin rights): the everyday user of the CRM pages."""
    return login(client, teammate)
