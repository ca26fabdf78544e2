"""One small adapter per lock library, so the measurements run the same code
around each of them.

Every adapter has ``acquire(blocking=True) -> bool``, ``release()`` and
``owned() -> bool`` and uses the library the way its documentation shows:

* redlease      redlease.Lock(url, key, ttl=..., auto_renew=...)
* redis-py      redis.Redis(...).lock(key, timeout=ttl)   (polls every 0.1 s)
* redis_lock    redis_lock.Lock(client, key, expire=..., auto_renewal=...)
                (python-redis-lock: waits on BLPOP of a signal list)
* pottery       pottery.Redlock(key=..., masters={client}, auto_release_time=...)
"""
import logging

NAMES = {
    "redlease": "redlease",
    "hiredis": "bare hiredis (C)",
    "redispy": "redis-py",
    "prl": "python-redis-lock",
    "pottery": "pottery",
}

# python-redis-lock logs a WARNING on every refused non-blocking attempt and
# INFO on every acquire; pottery logs at INFO.  Keep the workers quiet.
for _name in ("redis_lock", "pottery", "redlease"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def redis_client(url, blocking_pool=0, **kw):
    """redis-py client.  blocking_pool=N: a BlockingConnectionPool of N
    connections (threads wait for a free one instead of failing with
    "Too many connections" once the default pool of 100 is used up)."""
    import redis
    if blocking_pool:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=blocking_pool,
                                                     timeout=None, **kw)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, **kw)


class RedleaseLock:
    impl = "redlease"

    def __init__(self, url, key, ttl=10.0, auto_renew=True, client=None):
        import redlease
        self.lock = redlease.Lock(url, key, ttl=ttl, auto_renew=auto_renew)

    def acquire(self, blocking=True):
        return self.lock.acquire(blocking)

    def release(self):
        self.lock.release()

    def owned(self):
        return self.lock.owned


class RedisPyLock:
    impl = "redispy"

    def __init__(self, url, key, ttl=10.0, auto_renew=False, client=None):
        if auto_renew:
            raise ValueError("redis-py's Lock has no automatic renewal")
        self.client = client if client is not None else redis_client(url)
        # sleep=0.1 is the library default; spelled out because P3 depends on it.
        self.lock = self.client.lock(key, timeout=ttl, sleep=0.1)

    def acquire(self, blocking=True):
        return self.lock.acquire(blocking=blocking)

    def release(self):
        self.lock.release()

    def owned(self):
        return self.lock.owned()


class PythonRedisLock:
    impl = "prl"

    def __init__(self, url, key, ttl=10.0, auto_renew=False, client=None):
        import redis_lock
        self.client = client if client is not None else redis_client(url)
        expire = max(1, int(round(ttl)))   # the library takes whole seconds
        self.lock = redis_lock.Lock(self.client, key, expire=expire, auto_renewal=auto_renew)

    def acquire(self, blocking=True):
        return self.lock.acquire(blocking=blocking)

    def release(self):
        self.lock.release()

    def owned(self):
        return self.lock.get_owner_id() == self.lock.id


class PotteryLock:
    impl = "pottery"

    def __init__(self, url, key, ttl=10.0, auto_renew=False, client=None):
        if auto_renew:
            raise ValueError("pottery's Redlock has no automatic renewal")
        from pottery import Redlock
        self.client = client if client is not None else redis_client(url)
        self.lock = Redlock(key=key, masters={self.client}, auto_release_time=ttl)

    def acquire(self, blocking=True):
        return self.lock.acquire(blocking=blocking)

    def release(self):
        self.lock.release()

    def owned(self):
        return self.lock.locked() > 0


ADAPTERS = {a.impl: a for a in (RedleaseLock, RedisPyLock, PythonRedisLock, PotteryLock)}


def make(impl, url, key, **kw):
    return ADAPTERS[impl](url, key, **kw)
