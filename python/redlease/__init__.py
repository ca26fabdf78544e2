"""redlease: leader election and distributed locks on Redis.

One C engine thread per process keeps every lease (hiredis, poll loop) and
never takes the GIL; ``node.is_leader`` is a memory read.
"""
import typing as _typing

from . import _redlease
from ._redlease import (
    AuthenticationError,
    ConnectionError,
    LeadershipLost,
    LockNotOwnedError,
    PermissionError,
    RedisError,
    RedleaseError,
    TLSError,
    hiredis_version,
)
from ._lock import Lock
from ._node import DistributionNode, Lease
from ._watch import Watch, key_status
from ._dispatch import engine_stats

__version__ = "0.1.0"

#: What a key argument may be (a str is encoded as UTF-8).
Key = _typing.Union[str, bytes]

__all__ = [
    "DistributionNode",
    "Lock",
    "Lease",
    "RedleaseError",
    "LeadershipLost",
    "ConnectionError",
    "AuthenticationError",
    "PermissionError",
    "TLSError",
    "RedisError",
    "LockNotOwnedError",
    "Key",
    "Watch",
    "key_status",
    "engine_stats",
    "hiredis_version",
    "__version__",
]
