"""Host names are resolved on every connect attempt (issue 8).

Each test makes its own network namespace with its own /etc/hosts
(``ip netns`` bind-mounts /etc/netns/NAME/hosts over /etc/hosts for the
processes it starts), runs redis-servers and a node process inside it, and
changes where the name points by rewriting that file in place.  Needs root
and ``ip``; skipped otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pytest

from helpers.waiting import wait_until

IP = shutil.which("ip")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(IP is None, reason="no 'ip' command (iproute2) to make a network namespace"),
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server not found"),
    pytest.mark.skipif(not os.path.exists(REDIS_CLI), reason="redis-cli not found"),
]

PORT = 6399          # the same port on every address: only the name changes
TTL = 1.0

WORKER = textwrap.dedent("""
    import json, sys, time
    import redlease
    url, key = sys.argv[1], sys.argv[2]
    node = redlease.DistributionNode(url, key, node_id="dns-node", ttl=%r,
                                     connect_timeout=0.5, command_timeout=0.5)
    node.start()
    try:
        while True:
            print(json.dumps({"leader": node.is_leader, "error": node.last_error}), flush=True)
            time.sleep(0.05)
            if sys.stdin.readline() == "":
                break
    finally:
        node.stop()
""" % TTL)


class Namespace:
    """A network namespace with lo up and its own hosts file."""

    def __init__(self):
        self.name = "rl" + uuid.uuid4().hex[:10]
        self.etc = os.path.join("/etc/netns", self.name)
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="rldns-")
        self.created = False

    def __enter__(self):
        subprocess.run([IP, "netns", "add", self.name], check=True, capture_output=True)
        self.created = True
        os.makedirs(self.etc, exist_ok=True)
        self.write_hosts("")
        self.run([IP, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    f.close()
        if self.created:
            subprocess.run([IP, "netns", "del", self.name], capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_resolv(self, text):
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write(text)

    def write_hosts(self, lines):
        """Rewrite the hosts file in place: the namespace's processes see
        this inode bind-mounted over /etc/hosts (a rename would not be seen)."""
        path = os.path.join(self.etc, "hosts")
        mode = "r+" if os.path.exists(path) else "w"
        with open(path, mode) as f:
            f.seek(0)
            f.truncate()
            f.write("127.0.0.1 localhost\n" + lines)

    def run(self, argv, **kw):
        return subprocess.run([IP, "netns", "exec", self.name, *argv], capture_output=True, **kw)

    def spawn(self, argv, **kw):
        p = subprocess.Popen([IP, "netns", "exec", self.name, *argv], **kw)
        self.procs.append(p)
        return p

    def redis(self, addr):
        d = os.path.join(self.dir, addr)
        os.makedirs(d)
        p = self.spawn([REDIS_SERVER, "--port", str(PORT), "--bind", addr, "--save", "",
                        "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "log")],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.cli(addr, "PING") == "PONG", timeout=20)
        return p

    def cli(self, addr, *args):
        r = self.run([REDIS_CLI, "-h", addr, "-p", str(PORT), *args], timeout=10)
        return r.stdout.decode().strip()

    def worker(self, url, key):
        path = os.path.join(self.dir, "worker.py")
        with open(path, "w") as f:
            f.write(WORKER)
        p = self.spawn([sys.executable, "-u", path, url, key], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return Worker(p)


class Worker:
    def __init__(self, proc):
        self.proc = proc
        self.last = {}

    def poll(self):
        """Latest state line (one line per nudge)."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("worker exited: " + self.proc.stderr.read())
        self.last = json.loads(line)
        return self.last


def _holder(ns, addr, key):
    v = ns.cli(addr, "GET", key)
    return v.split("#", 1)[0] if v else None


@pytest.mark.node_timeout(120)
def test_name_moves_to_another_server_on_reconnect():
    key = "redlease-test:dns-move"
    with Namespace() as ns:
        ns.write_hosts("127.0.0.2 redis-primary.test\n")
        first = ns.redis("127.0.0.2")
        ns.redis("127.0.0.3")
        w = ns.worker(f"redis://redis-primary.test:{PORT}/0", key)
        wait_until(lambda: w.poll()["leader"], timeout=30, desc="leads on the first server")
        assert _holder(ns, "127.0.0.2", key) == "dns-node"
        assert _holder(ns, "127.0.0.3", key) is None
        # The name now points at the second server; the first one dies.
        ns.write_hosts("127.0.0.3 redis-primary.test\n")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(lambda: _holder(ns, "127.0.0.3", key) == "dns-node", timeout=40,
                   desc="the node leads on the second server")
        wait_until(lambda: w.poll()["leader"], timeout=20)


@pytest.mark.node_timeout(120)
def test_name_added_later_is_used():
    key = "redlease-test:dns-later"
    with Namespace() as ns:
        ns.redis("127.0.0.2")
        w = ns.worker(f"redis://late-name.test:{PORT}/0", key)
        err = wait_until(lambda: w.poll()["error"], timeout=20, desc="an error about the name")
        assert err.startswith("cannot resolve host 'late-name.test': "), err
        assert err.endswith("check the host name in the URL"), err
        assert not w.last["leader"]
        ns.write_hosts("127.0.0.2 late-name.test\n")
        wait_until(lambda: w.poll()["leader"], timeout=40, desc="leads once the name resolves")
        assert _holder(ns, "127.0.0.2", key) == "dns-node"


@pytest.mark.node_timeout(120)
def test_every_address_of_a_name_is_tried():
    # Nothing listens on 127.0.0.9: the connection goes on to 127.0.0.2.
    key = "redlease-test:dns-multi"
    with Namespace() as ns:
        ns.write_hosts("127.0.0.9 multi.test\n127.0.0.2 multi.test\n")
        ns.redis("127.0.0.2")
        w = ns.worker(f"redis://multi.test:{PORT}/0", key)
        wait_until(lambda: w.poll()["leader"], timeout=30, desc="leads via the second address")
        assert _holder(ns, "127.0.0.2", key) == "dns-node"


SILENT_DNS = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.53", 53))
    print("ready", flush=True)
    while True:
        s.recvfrom(4096)          # never answers: every lookup waits out its timeout
""")

SLOW_WORKER = textwrap.dedent("""
    import json, os, sys, time
    import redlease
    fast_url, slow_url, key = sys.argv[1], sys.argv[2], sys.argv[3]
    fast = redlease.DistributionNode(fast_url, key, node_id="fast", ttl=1.0,
                                     connect_timeout=0.5, command_timeout=0.5)
    slow = redlease.DistributionNode(slow_url, key + ":slow", node_id="slow", ttl=1.0,
                                     connect_timeout=0.5, command_timeout=0.5)
    fast.start()
    assert fast.wait_for_leadership(30), fast.last_error
    def threads():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
    before = threads()
    slow.start()
    most = before
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:      # lookups keep hanging meanwhile
        time.sleep(0.05)
        most = max(most, threads())
    out = {"extra_threads": most - before,"fast_leader": fast.is_leader, "renewals": fast.stats()["renewals"],
           "slow_error": slow.last_error, "slow_leader": slow.is_leader}
    # a fork while lookups are in flight: the child exits cleanly
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    out["child_status"] = status
    slow.stop()                              # with a lookup still running
    out["fast_leader_after"] = fast.wait_for_leadership(5)
    fast.stop()
    print(json.dumps(out), flush=True)
""")


@pytest.mark.node_timeout(120)
def test_slow_resolver_stalls_nothing_else():
    """A resolver that never answers: the lookup is bounded by connect_timeout,
    the other lease of the process keeps renewing, and stopping the node or
    forking while a lookup runs neither crashes nor hangs."""
    key = "redlease-test:dns-slow"
    with Namespace() as ns:
        ns.write_resolv("nameserver 127.0.0.53\noptions timeout:5 attempts:3\n")
        path = os.path.join(ns.dir, "dns.py")
        with open(path, "w") as f:
            f.write(SILENT_DNS)
        dns = ns.spawn([sys.executable, "-u", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert dns.stdout.readline().strip() == "ready", dns.stderr.read()
        ns.redis("127.0.0.2")
        wpath = os.path.join(ns.dir, "slow_worker.py")
        with open(wpath, "w") as f:
            f.write(SLOW_WORKER)
        w = ns.spawn([sys.executable, "-u", wpath, f"redis://127.0.0.2:{PORT}/0",
                      f"redis://never-answered.test:{PORT}/0", key],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out_text, err_text = w.communicate(timeout=90)
        assert w.returncode == 0, err_text
        out = json.loads(out_text.strip().splitlines()[-1])
        assert out["fast_leader"] and out["fast_leader_after"]
        assert out["renewals"] >= 2
        assert not out["slow_leader"]
        assert out["slow_error"].startswith("cannot resolve host 'never-answered.test'"), out
        assert "connect_timeout" in out["slow_error"], out
        assert out["child_status"] == 0
        # one lookup thread per connection (command + subscriber) at most,
        # however many attempts time out meanwhile
        assert out["extra_threads"] <= 2, out
