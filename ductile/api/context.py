"""What a route handler reaches through its request: the gateway's services.

Its own module so that route modules depend on the app's state, not on one another (they used to
import it from ``health``).
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from ductile.runtime.services import Services


def services_of(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services
