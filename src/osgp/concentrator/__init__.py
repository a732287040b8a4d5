"""The data concentrator: the store (devices, routes, keys, readings, jobs), keys at rest."""

from osgp.concentrator import tariffs as _tariffs  # noqa: F401  (registers its operation kinds)
from osgp.concentrator.keys import KeyVault, parse_key, parse_password
from osgp.concentrator.store import (
    AuditEntry,
    Device,
    Job,
    Link,
    Outcome,
    Route,
    Schedule,
    Store,
)

__all__ = [
    "Store",
    "KeyVault",
    "parse_key",
    "parse_password",
    "Device",
    "Route",
    "Link",
    "Job",
    "Outcome",
    "AuditEntry",
    "Schedule",
]
