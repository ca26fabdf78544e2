"""``redlease run KEY -- CMD``: run a command only while this process leads KEY.

One main loop, woken through a pipe: by signals (``signal.set_wakeup_fd``
writes their numbers into it, whichever thread the kernel picked), by the
node's callbacks and by SIGCHLD.  Each time it wakes it compares the state of
the lease and of CMD and acts; the events carry no state of their own, so a
stale or reordered callback cannot mislead it.
"""
import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
import time

from .cli import (EXIT_CANNOT_EXEC, EXIT_INTERRUPTED, EXIT_LOST, EXIT_NOT_FOUND, EXIT_OK, CliError,
                  error_message, mask_url, resolve_url, scrub)

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
                on_elected=self.wake, on_revoked=self.on_revoked,
                on_leader_change=self.wake)
        except Exception as exc:  # noqa: BLE001 - reported in one line
            raise CliError(error_message(exc, self.url))
        self.rfd, self.wfd = os.pipe()
        for fd in (self.rfd, self.wfd):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        handled = STOP_SIGNALS + PASS_SIGNALS + (signal.SIGCHLD,)
        old = {s: signal.getsignal(s) for s in handled}
        old_fd = signal.set_wakeup_fd(self.wfd, warn_on_full_buffer=False)
        try:
            for s in handled:
                # A Python-level handler makes the C handler write the signal
                # number to the wake-up pipe; the loop does the work.
                signal.signal(s, _noop)
            self.node.start()
            self.info("campaigning for %r as %s at %s (ttl %g s)"
                      % (self.key, self.node.node_id, mask_url(self.url), args.ttl))
            return self._loop()
        finally:
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

    def _loop(self):
        while True:
            rc = self._step()
            if rc is not None:
                return rc
            timeout = 0.5
            if self.kill_at is not None:
                timeout = max(0.0, min(timeout, self.kill_at - time.monotonic()))
            try:
                select.select([self.rfd], [], [], timeout)
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
                self.info("%s: passing it on to CMD (pid %d), SIGKILL in %g s"
                          % (name, self.proc.pid, self.args.grace))
            else:
                self.info("%s: stopping" % name)
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signum)
            if self.kill_at is None:
                self.kill_at = time.monotonic() + self.args.grace

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

    def _report_node(self):
        node = self.node
        err = node.last_error
        err = None if err is None else scrub(err, self.url)
        if err != self.seen_error:
            self.seen_error = err
            if err is not None:
                self._write("warning: %s" % err)
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
            # Whatever CMD left in its process group goes too.
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            lost, self.lost = self.lost, False
            self.info("CMD (pid %d) exited with code %d" % (proc.pid, code))
            if self.stop_signal is not None:
                return code
            if lost:
                if args.restart:
                    self.info("campaigning again (--restart)")
                    return None
                self.info("exiting with code %d: the lease was lost" % EXIT_LOST)
                return EXIT_LOST
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
        # 3. The lease of the running CMD is gone?
        if proc is not None and not self.lost:
            token = node.token
            if not node.is_leader or token != self.proc_token:
                self.lost = True
                reason = scrub(self.revoke_reason or node.last_error or "not leading", self.url)
                self.info("lost the lease of %r (%s): SIGTERM to CMD (pid %d), SIGKILL in %g s"
                          % (self.key, reason, proc.pid, args.grace))
                self._signal_group(signal.SIGTERM)
                deadline = time.monotonic() + args.grace
                if self.kill_at is None or self.kill_at > deadline:
                    self.kill_at = deadline
        self._report_node()
        # 4. Grace period over?
        if proc is not None and self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.info("CMD (pid %d) still running after %g s: SIGKILL" % (proc.pid, args.grace))
            self._signal_group(signal.SIGKILL)
            self.kill_at = None
        # 5. --no-wait: someone else holds the key, and we never led: skip.
        if (args.no_wait and self.proc is None and not self.ever_led and not node.is_leader
                and node.leader not in (None, node.node_id)):
            self.info("%r is held by %s: not running CMD (--no-wait)" % (self.key, node.leader))
            return EXIT_OK
        # 6. Leading and idle: start CMD.
        if self.proc is None and self.stop_signal is None and node.is_leader:
            token = node.token
            if token is not None:
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


def _noop(signum, frame):
    pass


def cmd_run(args):
    url = resolve_url(args)
    return Runner(args, url).run()
