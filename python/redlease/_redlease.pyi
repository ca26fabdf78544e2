import builtins
from typing import Dict, Optional, Tuple, Union

hiredis_version: Tuple[int, int, int]
HAS_TLS: int
LEASE_STATE_BYTES: int
SCRIPTS: Dict[str, str]

EV_ELECTED: int
EV_REVOKED: int
EV_LEADER: int
EV_ERROR: int
EV_RECOVERED: int
PHASE_IDLE: int
PHASE_RUNNING: int
PHASE_STOPPING: int
PHASE_STOPPED: int
MODE_NODE: int
MODE_LOCK: int
MODE_WATCH: int
WAIT_LEADER: int
WAIT_STOPPED: int
WAIT_LOCK: int
WAIT_RELEASED: int
WATCH_INITIAL: int
WATCH_ELECTED: int
WATCH_RELEASED: int
WATCH_EXPIRED: int

class RedleaseError(Exception): ...
class LeadershipLost(RedleaseError): ...
class ConnectionError(RedleaseError, builtins.ConnectionError): ...
class AuthenticationError(ConnectionError): ...
class RedisError(RedleaseError): ...
class PermissionError(RedisError): ...
class LockNotOwnedError(RedleaseError, builtins.RuntimeError): ...

class LeaseBase:
    def __init__(
        self,
        url: str,
        key: Union[str, bytes],
        *,
        node_id: Optional[str] = ...,
        ttl: float = ...,
        renew_interval: Optional[float] = ...,
        retry_interval: Optional[float] = ...,
        connect_timeout: float = ...,
        command_timeout: float = ...,
        _mode: int = ...,
        _auto_renew: bool = ...,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def resign(self) -> None: ...
    def wait_for_leadership(self, timeout: Optional[float] = ...) -> bool: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def token(self) -> Optional[int]: ...
    @property
    def lease_remaining(self) -> float: ...
    @property
    def leader(self) -> Optional[str]: ...
    @property
    def last_error(self) -> Optional[str]: ...
    @property
    def key(self) -> Union[str, bytes]: ...
    @property
    def node_id(self) -> str: ...
    @property
    def ttl(self) -> float: ...
    @property
    def renew_interval(self) -> float: ...
    @property
    def retry_interval(self) -> float: ...
    @property
    def url(self) -> str: ...

def engine_stats() -> Dict[str, int]: ...
