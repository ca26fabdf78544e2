"""``redlease run KEY -- CMD``: run a command only while this process leads KEY.

One main loop, woken through a pipe: by signals (``signal.set_wakeup_fd``
writes their numbers into it, whichever thread the kernel picked), by the
node's callbacks and by SIGCHLD.  Each time it wakes it compares the state of
the lease and of CMD and acts; the events carry no state of their own, so a
stale or reordered callback cannot mislead it.
"""
import errno
import fcntl
import logging
import math
import os
import select
import signal
import ssl
import subprocess
import sys
import threading
import time

from .cli import (EXIT_CANNOT_EXEC, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_LOST, EXIT_NOT_FOUND, EXIT_OK,
                  CliError, error_message, mask_url, resolve_url, scrub)
from . import _cli_once

# What the engine reports while a database refuses grants for one ttl (its
# redlease:marker is young): a wait that ends by itself, not an error.
MARKER_WAIT_PREFIX = "no grants yet"

DEFAULT_GRACE = 10.0


def _now():
    """The engine's clock (lease_remaining counts on it): CLOCK_BOOTTIME."""
    return time.clock_gettime(CLOCK)


CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def kill_margin(ttl):
    """Time kept between the latest SIGKILL and the lease's local deadline."""
    return 0.1 * ttl + 0.05


def drift(ttl):
    """The engine's allowance for clock-rate drift (deadline = t_send + ttl - drift)."""
    return ttl / 100 + 0.002


def max_grace(ttl, renew):
    """The longest --grace that fits: CMD gets SIGTERM once the lease has
    grace + margin left without a renewal and SIGKILL at margin; a healthy
    lease must never get that low between two renewals (renew_interval, plus
    margin for the renewal's round trip)."""
    m = kill_margin(ttl)
    return ttl - drift(ttl) - renew - 2 * m


def _ttl_for(grace):
    """The smallest ttl whose max_grace is >= grace (renew_interval = ttl/3)."""
    # ttl - ttl/100 - 0.002 - ttl/3 - 0.2 ttl - 0.1 >= grace
    k = 1 - 0.01 - 1 / 3 - 0.2
    return (grace + 0.102) / k

# Signals that stop redlease run: forwarded to CMD, no restart afterwards.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Signals only passed on to CMD.
PASS_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

PR_SET_PDEATHSIG = 1


_prctl = []


def _child_setup():
    """preexec_fn for CMD: its own process group, and SIGKILL when redlease dies."""
    os.setpgid(0, 0)
    if _prctl and _prctl[0] is not None:
        _prctl[0](PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != _prctl[1]:   # redlease died before prctl took effect
            os._exit(EXIT_LOST)


def _child_setup_prepare():
    """Look prctl up before forking (nothing is imported in the child)."""
    if not _prctl:
        try:
            import ctypes
            fn = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError, ImportError):
            fn = None
        _prctl[:] = [fn, os.getpid()]
    _prctl[1] = os.getpid()


def exit_code_of(returncode):
    """Popen.returncode as a shell would report it (128+N for signal N)."""
    return returncode if returncode >= 0 else 128 - returncode


class Runner:
    def __init__(self, args, url):
        self.args = args
        self.url = url
        self.key = args.key
        self.proc = None
        self.proc_token = None
        self.lost = False            # the lease of the running CMD was lost
        self.ever_led = False        # CMD was started at least once
        self.kill_at = None          # when to SIGKILL CMD's group
        self.stop_signal = None      # first stop signal received
        self.seen_leader = object()
        self.seen_error = None
        self.revoke_reason = None    # from on_revoked, for the messages
        self.rfd = self.wfd = None
        self.wake_lock = threading.Lock()
        self.node = None
        self.grace = None            # seconds, checked against the ttl
        self.margin = None
        self.term_at = None          # when CMD got SIGTERM (BOOTTIME)
        self.err_state = None        # None, "marker" or "error": printed on change
        self.announced = False
        self.marker_warned = False
        self.started_at = None
        self.once_per = getattr(args, "once_per", None)

    # ------------------------------------------------------------ output
    def info(self, msg):
        if not self.args.quiet:
            self._write(msg)

    def _write(self, msg):
        try:
            sys.stderr.write("redlease run: %s\n" % msg)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------ wake-ups
    def wake(self, *_ignored):
        """Wake the main loop (called from the dispatcher thread)."""
        with self.wake_lock:
            if self.wfd is None:
                return
            try:
                os.write(self.wfd, b"\0")
            except OSError:   # pipe full: a wake-up is pending anyway
                pass

    def on_revoked(self, reason):
        self.revoke_reason = reason
        self.wake()

    def _drain(self):
        sigs = []
        while True:
            try:
                data = os.read(self.rfd, 512)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                break
            sigs.extend(b for b in data if b)
        return sigs

    # ------------------------------------------------------------ main
    def run(self):
        import redlease
        args = self.args
        try:
            self.node = redlease.DistributionNode(
                self.url, self.key, node_id=args.node_id, ttl=args.ttl,
                connect_timeout=args.connect_timeout,
                on_elected=self.wake, on_revoked=self.on_revoked,
                on_leader_change=self.wake, min_replicas=getattr(args, "min_replicas", 0))
        except Exception as exc:  # noqa: BLE001 - reported in one line
            raise CliError(error_message(exc, self.url))
        try:
            self._check_grace()
            if self.once_per is not None and self._marker_says_done(early=True):
                return EXIT_OK
        except BaseException:
            self.node.stop()
            raise
        self.rfd, self.wfd = os.pipe()
        for fd in (self.rfd, self.wfd):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        handled = STOP_SIGNALS + PASS_SIGNALS + (signal.SIGCHLD,)
        old = {s: signal.getsignal(s) for s in handled}
        old_fd = signal.set_wakeup_fd(self.wfd, warn_on_full_buffer=False)
        handler = None
        try:
            for s in handled:
                # A Python-level handler makes the C handler write the signal
                # number to the wake-up pipe; the loop does the work.
                signal.signal(s, _noop)
            handler = _WakeHandler(self.wake)
            logging.getLogger("redlease").addHandler(handler)
            self.node.start()
            self.started_at = _now()
            return self._loop()
        finally:
            if handler is not None:
                logging.getLogger("redlease").removeHandler(handler)
            for s in handled:
                signal.signal(s, signal.SIG_IGN if s in STOP_SIGNALS else old[s])
            self._finish()
            signal.set_wakeup_fd(old_fd)
            with self.wake_lock:     # late callbacks must not write to a reused fd
                os.close(self.wfd)
                self.wfd = None
            os.close(self.rfd)
            for s in handled:
                signal.signal(s, old[s])

    def _finish(self):
        """Leave nothing behind: CMD's group killed, the lease released."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.node is not None:
            try:
                self.node.stop()
            except Exception as exc:  # noqa: BLE001
                self._write("releasing the lease failed: %s" % scrub(exc, self.url))

    # ------------------------------------------------------------ checks
    def _check_grace(self):
        """--grace must fit the ttl (see max_grace); without it, the longest
        that fits, at most DEFAULT_GRACE."""
        ttl, renew = self.node.ttl, self.node.renew_interval
        limit = max_grace(ttl, renew)
        self.margin = kill_margin(ttl)
        if limit < 0:
            raise CliError("--ttl %g s is too short for run: CMD must be gone a margin of %.3g s "
                           "before the lease can expire, and a renewal needs %.3g s; use --ttl "
                           "%.2g or more" % (ttl, self.margin, renew, _ttl_for(0.0)))
        if self.args.grace is None:
            self.grace = min(DEFAULT_GRACE, limit)
        elif self.args.grace > limit:
            shown = math.floor(limit * 1000) / 1000       # a value the check accepts
            raise CliError("--grace %g s does not fit --ttl %g s: CMD must be gone before the "
                           "lease can expire, so grace <= ttl - renew_interval - 2 x margin - "
                           "drift = %g - %.3g - 2 x %.3g - %.3g = %.3f s; use --grace %.3f or "
                           "less, or --ttl %.3g or more"
                           % (self.args.grace, ttl, ttl, renew, self.margin, drift(ttl), shown,
                              shown, math.ceil(_ttl_for(self.args.grace) * 100) / 100))
        else:
            self.grace = self.args.grace

    def _marker_says_done(self, early=False):
        """--once-per: True (and a message) if a run completed within the period,
        False if not, None if Redis could not be asked (try again later).  The
        early look (before campaigning) only saves a campaign; the one once
        leading is the one that counts."""
        try:
            m = _cli_once.read_marker(self.url, self.key, self.args.connect_timeout + 1.0)
        except (OSError, EOFError) as exc:
            if isinstance(exc, ssl.SSLError):      # a certificate problem: not fixed by waiting
                raise CliError("--once-per: TLS to %s failed while reading the marker: %s"
                               % (mask_url(self.url), scrub(exc, self.url)))
            if self.args.no_wait:
                raise CliError("--once-per: cannot reach Redis at %s to read the marker %r: %s "
                               "(--no-wait: not waiting)" % (mask_url(self.url),
                                                            _cli_once.marker_key(self.key),
                                                            scrub(exc, self.url)))
            if not early and not self.marker_warned:
                self.marker_warned = True
                self._write("warning: --once-per: cannot read the marker %r: %s; retrying"
                            % (_cli_once.marker_key(self.key), scrub(exc, self.url)))
            return False if early else None
        except Exception as exc:  # noqa: BLE001 - reported in one line
            raise CliError("--once-per: cannot read the marker %r at %s: %s"
                           % (_cli_once.marker_key(self.key), mask_url(self.url),
                              scrub(exc, self.url)))
        if m is None:
            return False
        self.info("%r already ran within the last %g s (%s): not running CMD (--once-per)"
                  % (self.key, self.once_per, _cli_once.describe(m)))
        return True

    def _record_run(self, token, code):
        """--once-per: leave the marker, only if the lease is still this term."""
        node = self.node
        if not (node.is_leader and node.token == token):
            self._write("--once-per: the lease ended before the run could be recorded; "
                        "another host may run CMD again")
            return False
        try:
            ok = _cli_once.write_marker(self.url, self.key, node.node_id, token, code,
                                        self.once_per, self.args.connect_timeout + 1.0)
        except Exception as exc:  # noqa: BLE001 - reported in one line
            self._write("--once-per: cannot write the marker %r at %s: %s"
                        % (_cli_once.marker_key(self.key), mask_url(self.url),
                           scrub(exc, self.url)))
            return False
        if not ok:
            self._write("--once-per: the lease was no longer this run's when recording it; "
                        "another host may run CMD again")
            return False
        self.info("recorded the run in %r for %g s" % (_cli_once.marker_key(self.key),
                                                       self.once_per))
        return True

    # ------------------------------------------------------------ loop
    def _loop(self):
        while True:
            rc = self._step()
            if rc is not None:
                return rc
            timeout = 0.5
            now = _now()
            if self.kill_at is not None:
                timeout = min(timeout, self.kill_at - now)
            if self.proc is not None and self.term_at is None and not self.lost:
                # when the lease will have only grace + margin left, if no
                # renewal comes in meanwhile (renewals move it on)
                rem = self.node.lease_remaining
                timeout = min(timeout, rem - self.grace - self.margin)
            try:
                select.select([self.rfd], [], [], max(0.0, timeout))
            except InterruptedError:
                pass
            for s in self._drain():
                self._on_signal(s)

    def _on_signal(self, signum):
        if signum == signal.SIGCHLD:
            return
        if signum in PASS_SIGNALS:
            if self.proc is not None:
                self._signal_group(signum)
            return
        if self.stop_signal is None:
            self.stop_signal = signum
            name = signal.Signals(signum).name
            if self.proc is not None and self.proc.poll() is None:
                self.info("%s: passing it on to CMD (pid %d), SIGKILL in %g s at the latest"
                          % (name, self.proc.pid, self.grace))
            else:
                self.info("%s: stopping" % name)
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signum)
            if self.term_at is None:
                self.term_at = _now()
            self._kill_by(_now() + self.grace)

    def _kill_by(self, t):
        if self.kill_at is None or t < self.kill_at:
            self.kill_at = t

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _fatal(self):
        """An error that waiting cannot fix (refused credentials, NOPERM, a bad
        database, ...): the engine keeps it until an attempt succeeds."""
        import redlease
        try:
            self.node.wait_for_leadership(0)
        except redlease.RedleaseError as exc:
            return exc
        return None

    def _report_node(self):
        node = self.node
        err = node.last_error
        err = None if err is None else scrub(err, self.url)
        if err != self.seen_error:
            self.seen_error = err
            state = None if err is None else (
                "marker" if err.startswith(MARKER_WAIT_PREFIX) else "error")
            if state != self.err_state:
                # one line per change of state, not one per retry
                if self.err_state == "error":
                    self.info("Redis at %s answers again" % mask_url(self.url))
                if state == "marker":
                    self.info("waiting: %s" % err)
                elif state == "error":
                    self._write("warning: %s; retrying" % err)
                self.err_state = state
        leader = node.leader
        if leader != self.seen_leader:
            self.seen_leader = leader
            if leader is not None and leader != node.node_id:
                self.info("%r is held by %s; waiting" % (self.key, leader))

    def _step(self):
        node = self.node
        args = self.args
        proc = self.proc
        # 1. CMD exited?
        if proc is not None and proc.poll() is not None:
            code = exit_code_of(proc.returncode)
            self.proc = None
            self.kill_at = None
            self.term_at = None
            # Whatever CMD left in its process group goes too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            lost, self.lost = self.lost, False
            self.info("CMD (pid %d) exited with code %d" % (proc.pid, code))
            if self.stop_signal is not None:
                return code
            if lost:
                if args.restart:
                    self.info("campaigning again (--restart)")
                    if node.is_leader:
                        node.resign()
                    return None
                self.info("exiting with code %d: the lease was lost" % EXIT_LOST)
                return EXIT_LOST
            if self.once_per is not None:
                if not self._record_run(self.proc_token, code):
                    return EXIT_ERROR
            if args.restart:
                if node.is_leader:
                    node.resign()
                    self.info("released %r; campaigning again (--restart)" % self.key)
                return None
            return code
        # 2. Stopping with no CMD running.
        if self.stop_signal is not None and proc is None:
            return EXIT_INTERRUPTED if self.stop_signal == signal.SIGINT \
                else 128 + self.stop_signal
        # 3. The lease of the running CMD: gone, or running out?
        if proc is not None and not self.lost:
            token = node.token
            rem = node.lease_remaining
            now = _now()
            if not node.is_leader or token != self.proc_token:
                self.lost = True
                reason = scrub(self.revoke_reason or node.last_error or "not leading", self.url)
                self.info("lost the lease of %r (%s): SIGTERM to CMD (pid %d), SIGKILL in %g s"
                          % (self.key, reason, proc.pid, self.grace))
                self._signal_group(signal.SIGTERM)
                if self.term_at is None:
                    self.term_at = now
                self._kill_by(now + self.grace)
            elif rem <= self.grace + self.margin:
                # No renewal for ttl - rem: the lease may run out.  CMD must be
                # gone a margin before this host's deadline.
                self.lost = True
                why = scrub(node.last_error or "no renewal reply yet", self.url)
                kill = max(0.0, rem - self.margin)
                self.info("the lease of %r runs out in %.3f s unless renewed (%s): SIGTERM to "
                          "CMD (pid %d), SIGKILL in %.3f s at the latest"
                          % (self.key, rem, why, proc.pid, kill))
                if self.term_at is None:
                    self._signal_group(signal.SIGTERM)
                    self.term_at = now
                self._kill_by(now + kill)
        fatal = self._fatal() if self.proc is None else None
        if fatal is not None:
            raise CliError(error_message(fatal, self.url))
        # --no-wait: a server we cannot use now is not waited for.
        if (args.no_wait and self.proc is None and not self.ever_led and not node.is_leader):
            err = node.last_error
            if err is not None and not err.startswith(MARKER_WAIT_PREFIX):
                raise CliError("Redis at %s: %s (--no-wait: not waiting)"
                               % (mask_url(self.url), scrub(err, self.url)))
        if not self.announced and (node.is_leader or node.leader is not None or node.last_error
                                   or _now() - self.started_at >= args.connect_timeout + 1.0):
            # after the first answer: a definitive error is then the only line
            self.announced = True
            self.info("campaigning for %r as %s at %s (ttl %g s, grace %g s)"
                      % (self.key, node.node_id, mask_url(self.url), args.ttl, self.grace))
        self._report_node()
        # 4. Time to SIGKILL?
        if proc is not None and self.kill_at is not None and _now() >= self.kill_at:
            self.info("CMD (pid %d) still running %.3f s after SIGTERM: SIGKILL to its group"
                      % (proc.pid, _now() - (self.term_at or _now())))
            self._signal_group(signal.SIGKILL)
            self.kill_at = None
        # 5. --no-wait: someone else holds the key, and we never led: skip.
        if (args.no_wait and self.proc is None and not self.ever_led and not node.is_leader
                and node.leader not in (None, node.node_id)):
            self.info("%r is held by %s: not running CMD (--no-wait)" % (self.key, node.leader))
            return EXIT_OK
        # 6. Leading with time to spare, and idle: start CMD.
        if (self.proc is None and self.stop_signal is None and node.is_leader
                and node.lease_remaining > self.grace + self.margin):
            token = node.token
            if token is not None:
                if self.once_per is not None and not self.ever_led:
                    done = self._marker_says_done()
                    if done is None:
                        return None            # asked again at the next step
                    if done:
                        return EXIT_OK
                return self._start(token)
        return None

    def _start(self, token):
        env = dict(os.environ)
        env["REDLEASE_KEY"] = self.key
        env["REDLEASE_TOKEN"] = str(token)
        env["REDLEASE_NODE_ID"] = self.node.node_id
        cmd = self.args.cmd
        _child_setup_prepare()
        try:
            self.proc = subprocess.Popen(cmd, env=env, close_fds=True, preexec_fn=_child_setup)
        except (OSError, subprocess.SubprocessError) as exc:
            not_found = isinstance(exc, OSError) and exc.errno == errno.ENOENT
            self._write("cannot run %r: %s" % (cmd[0], getattr(exc, "strerror", None) or exc))
            return EXIT_NOT_FOUND if not_found else EXIT_CANNOT_EXEC
        self.proc_token = token
        self.ever_led = True
        self.revoke_reason = None
        self.info("leading %r (fencing token %d): started CMD (pid %d)"
                  % (self.key, token, self.proc.pid))
        return None


class _WakeHandler(logging.Handler):
    """Wakes the main loop at each record of the library's logger (errors
    are logged at WARNING by the dispatcher thread as they happen)."""

    def __init__(self, wake):
        super().__init__(logging.WARNING)
        self._wake = wake

    def emit(self, record):
        self._wake()



def _noop(signum, frame):
    pass


def cmd_run(args):
    url = resolve_url(args)
    return Runner(args, url).run()
