"""``redlease watch KEY``: one timestamped line per change of the key's holder."""
import json
import queue
import signal
import sys
import time

from .cli import EXIT_INTERRUPTED, EXIT_OK, CliError, error_message, printable, resolve_url


class _Terminated(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def format_time(t):
    lt = time.localtime(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + ".%03d" % int(t % 1 * 1000)


def format_event(t, kind, holder, previous, as_json=False):
    if as_json:
        return json.dumps({"time": round(t, 6), "event": kind, "holder": holder,
                           "previous": previous})
    line = "%s %-8s holder=%s" % (format_time(t), kind, "-" if holder is None else printable(holder))
    if previous is not None and previous != holder:
        line += " previous=%s" % printable(previous)
    return line


def cmd_watch(args):
    import redlease
    url = resolve_url(args)
    events = queue.SimpleQueue()

    def on_change(kind, holder):
        events.put((time.time(), kind, holder))

    def on_term(signum, frame):
        raise _Terminated(signum)

    # Ctrl-C ends the watch even when SIGINT was ignored at start (e.g. a
    # background job of a script), as for the other commands.
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_term = signal.signal(signal.SIGTERM, on_term)
    watch = None
    rc = EXIT_OK
    try:
        try:
            # Fail fast (exit 1) on a wrong URL, password or an unreachable
            # server; once watching, errors are printed and retried.
            redlease.key_status(url, args.key, timeout=5.0)
            watch = redlease.Watch(url, args.key, on_change=on_change)
            watch.start()
        except (_Terminated, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - reported in one line
            raise CliError(error_message(exc, url))
        rc = _loop(watch, events, args)
    except KeyboardInterrupt:
        rc = EXIT_INTERRUPTED
    except _Terminated as exc:
        rc = 128 + exc.signum
    finally:
        # No second interruption while cleaning up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if watch is not None:
            try:
                watch.stop()
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    return rc


def _loop(watch, events, args):
    seen = 0
    current = None    # the holder before the event being printed
    last_error = None
    out = sys.stdout
    while True:
        try:
            t, kind, holder = events.get(timeout=0.25)
        except queue.Empty:
            err = getattr(watch, "last_error", None)
            if err is not None and str(err) != last_error:
                last_error = str(err)
                sys.stderr.write("redlease watch: %s\n" % last_error)
                sys.stderr.flush()
            continue
        out.write(format_event(t, kind, holder, current, args.json) + "\n")
        out.flush()
        current = holder
        if kind != "initial":
            seen += 1
            if args.count is not None and seen >= args.count:
                return EXIT_OK
