"""The value redlease stores in a lease key: ``<node_id>#<16 hex>`` (one per term)."""
import re

_TERM = re.compile(rb"^(.*)#[0-9a-f]{16}$", re.S)


def term_of(value):
    """The node_id part of a stored value (bytes), or the value itself when it
    is not a redlease term; None stays None.  Lists are mapped."""
    if isinstance(value, list):
        return [term_of(v) for v in value]
    if value is None:
        return None
    m = _TERM.match(value)
    return m.group(1) if m else value


def is_term(value):
    return value is not None and _TERM.match(value) is not None
