"""What route handlers are given by dependency injection: the facade (``ductile``), the running
process's live state (``runtime``) and the authenticated caller (``caller``).

Its own module so that route modules depend on the app's state, not on one another.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from ductile.api.auth import Caller, caller_of
from ductile.app.facade import Ductile
from ductile.runtime.services import Services

# Built once by the composition root (or the guard, for the caller), never from client input:
# checking their types on every request would cost time and prove nothing.
Facade = NamedDependency[SkipValidation[Ductile]]
Runtime = NamedDependency[SkipValidation[Services]]
CallerDep = NamedDependency[SkipValidation[Caller]]


def ductile_of(state: State) -> Ductile:
    facade: Ductile = state.ductile
    return facade


def facade_of(request: Request[Any, Any, Any]) -> Ductile:
    """The facade, for a handler on the enqueue path that takes it without dependency injection."""
    return ductile_of(request.app.state)


def runtime_of(state: State) -> Services:
    services: Services = state.services
    return services


DEPENDENCIES = {
    "ductile": Provide(ductile_of, sync_to_thread=False),
    "runtime": Provide(runtime_of, sync_to_thread=False),
    "caller": Provide(caller_of, sync_to_thread=False),
}
