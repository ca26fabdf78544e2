"""README's recipes, run as written: each code block after a
``<!-- recipe: NAME -->`` marker in README.md.  Only what must differ on a
test machine is replaced (the Redis URL, the cron job's path).  FastAPI,
uvicorn and Celery are installed by scripts/setup.sh; a venv without them
skips those recipes."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import procs
from helpers.redis_server import free_port
from helpers.waiting import wait_until

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def recipe(name):
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- recipe: %s -->\s*```[a-z]*\n(.*?)```" % re.escape(name), text, re.S)
    assert m, f"README has no recipe {name!r}"
    return m.group(1)


def test_every_recipe_in_readme_is_tested():
    names = re.findall(r"<!-- recipe: ([\w-]+) -->", open(README, encoding="utf-8").read())
    assert sorted(names) == ["celery-beat", "cron", "fastapi"], names


def _spawn(argv, cwd, env, **kw):
    return procs.spawn(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _env(url):
    env = dict(os.environ)
    env["REDIS_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---------------------------------------------------------------------------
# FastAPI: two uvicorn replicas, one leader, a takeover on shutdown
# ---------------------------------------------------------------------------
def _get_leader(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/leader", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


@pytest.mark.node_timeout(90)
def test_fastapi_recipe_two_replicas_and_a_takeover(redis_server, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    (tmp_path / "app.py").write_text(recipe("fastapi"))
    env = _env(redis_server.url())
    ports = [free_port(), free_port()]
    reps = [_spawn([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                    "--port", str(p)], tmp_path, env) for p in ports]
    try:
        def one_leader():
            views = [_get_leader(p) for p in ports]
            if None in views:
                return None
            leaders = [v for v in views if v["is_leader"]]
            return views if len(leaders) == 1 else None

        views = wait_until(one_leader, 30, interval=0.1, desc="exactly one replica leads")
        first = 0 if views[0]["is_leader"] else 1
        other = 1 - first
        assert views[other]["leader"] == views[first]["me"]
        reps[first].send_signal(signal.SIGTERM)      # graceful shutdown: lifespan exit
        # uvicorn >= 0.29 re-raises the signal it handled once it has shut down
        assert reps[first].wait(20) in (0, -signal.SIGTERM)
        wait_until(lambda: (_get_leader(ports[other]) or {}).get("is_leader"), 10,
                   interval=0.05, desc="the other replica takes over")
    finally:
        for p in reps:
            procs.kill(p)


# ---------------------------------------------------------------------------
# Celery beat under redlease run: one beat at a time, handed over on SIGTERM
# ---------------------------------------------------------------------------
PROJ = '''
import os
from celery import Celery

app = Celery("proj", broker=os.environ["REDIS_URL"])
app.conf.beat_schedule = {"tick": {"task": "proj.tick", "schedule": 0.3}}
app.conf.broker_connection_retry_on_startup = True


@app.task
def tick():
    pass
'''


def _beat_pids():
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        prog = argv[1] if len(argv) > 1 and argv[0].endswith((b"python", b"python3")) else argv[0]
        if prog.endswith(b"/celery") and b"beat" in argv and b"proj" in argv:
            out.append(int(pid))
    return out


@pytest.mark.node_timeout(120)
def test_celery_beat_recipe_runs_one_beat_and_hands_over(redis_server, tmp_path):
    pytest.importorskip("celery")
    line = recipe("celery-beat").strip()
    argv = shlex.split(line)
    assert argv[0] == "redlease"
    env = _env(redis_server.url())
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    hosts = []
    for name in ("host-a", "host-b"):
        d = tmp_path / name
        d.mkdir()
        (d / "proj.py").write_text(PROJ)
        hosts.append(_spawn([sys.executable, "-m", "redlease", *argv[1:]], d, env))
    try:
        wait_until(lambda: len(_beat_pids()) == 1, 30, interval=0.1, desc="one beat runs")
        wait_until(lambda: (redis_server.cmd("LLEN", "celery") or 0) >= 2, 30, interval=0.1,
                   desc="beat schedules tasks")
        held = redis_server.cmd("GET", "celery:beat").decode()
        leader_pid = int(held.split("#")[0].split(":")[-2])
        leader = next(h for h in hosts if h.pid == leader_pid)
        follower = next(h for h in hosts if h is not leader)
        assert all(len(_beat_pids()) <= 1 for _ in range(20) if not time.sleep(0.05))
        leader.send_signal(signal.SIGTERM)
        leader.wait(30)
        before = redis_server.cmd("LLEN", "celery")
        wait_until(lambda: redis_server.cmd("LLEN", "celery") > before + 1, 40, interval=0.1,
                   desc="the other host's beat schedules")
        assert len(_beat_pids()) == 1
        assert follower.poll() is None
    finally:
        for h in hosts:
            h.send_signal(signal.SIGTERM)
        for h in hosts:
            try:
                h.wait(20)
            except subprocess.TimeoutExpired:
                procs.kill(h)
        wait_until(lambda: not _beat_pids(), 20, desc="no beat left")


# ---------------------------------------------------------------------------
# cron: the crontab line on three hosts runs the job once
# ---------------------------------------------------------------------------
@pytest.mark.node_timeout(90)
def test_cron_recipe_runs_the_job_once_across_hosts(redis_server, tmp_path):
    line = recipe("cron").strip()
    fields = line.split(None, 5)
    assert len(fields) == 6, line
    argv = shlex.split(fields[5])
    assert argv[0] == "redlease"
    job_log = tmp_path / "ran.log"
    job = tmp_path / "nightly-report"
    job.write_text("#!/bin/sh\necho \"$REDLEASE_TOKEN\" >> %s\nsleep 0.5\n" % shlex.quote(str(job_log)))
    job.chmod(0o755)
    subst = {"redis://redis:6379/0": redis_server.url(), "/usr/local/bin/nightly-report": str(job)}
    argv = [subst.get(a, a) for a in argv]
    env = _env(redis_server.url())
    # two hosts at the same moment, a third one after the job finished
    same_time = [_spawn([sys.executable, "-m", "redlease", *argv[1:]], tmp_path, env)
                 for _ in range(2)]
    codes = [p.wait(60) for p in same_time]
    late = _spawn([sys.executable, "-m", "redlease", *argv[1:]], tmp_path, env)
    codes.append(late.wait(60))
    assert codes == [0, 0, 0], codes
    runs = job_log.read_text().split()
    assert len(runs) == 1, runs
