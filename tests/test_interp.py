"""Interpreters: redlease refuses subinterpreters with a clear ImportError,
and trying does not disturb the main interpreter's engine.

The engine (its C thread, event queue and atexit hook) is one per process
and serves the main interpreter only.  Each check runs in a child process,
so a crash or a broken engine cannot spill into the rest of the suite.
"""
from __future__ import annotations

import json
import textwrap

from helpers.scripts import Output

# Runs in the child's main interpreter: start a leader, try to import
# redlease in every kind of subinterpreter this Python offers (each one is
# destroyed before the next), then check that the leader kept its lease and
# that events still reach the main interpreter's dispatcher.
SUBINTERP_SCRIPT = textwrap.dedent(r"""
    import json, sys, threading

    import redlease

    url, key = sys.argv[1], sys.argv[2]

    def emit(**kw):
        print(json.dumps(kw), flush=True)

    # The code run inside each subinterpreter: report what `import redlease`
    # did through a shared object (run_string's `shared` where there is one)
    # or, failing that, through a file.
    SUB = '''
    import json
    try:
        import redlease
    except ImportError as e:
        res = {"raised": "ImportError", "msg": str(e)}
    except BaseException as e:
        res = {"raised": type(e).__name__, "msg": str(e)}
    else:
        res = {"raised": None, "msg": "imported"}
    with open(OUT, "a") as f:
        f.write(json.dumps(dict(res, how=HOW)) + "\\n")
    '''

    import os, tempfile
    fd, out_path = tempfile.mkstemp(prefix="redlease-subinterp-")
    os.close(fd)

    def code(how):
        return "OUT = %r\nHOW = %r\n" % (out_path, how) + SUB

    elected_a = threading.Event()
    a = redlease.DistributionNode(url, key, ttl=30.0, retry_interval=0.2,
                                  on_elected=lambda tok: elected_a.set())
    a.start()
    assert a.wait_for_leadership(20), "first node not elected"
    assert elected_a.wait(20), "on_elected of the first node never ran"
    emit(leader=a.node_id, token=a.token, stats_before=redlease.engine_stats())

    tried = []
    # 1. legacy subinterpreter (Py_NewInterpreter), on every version
    import _testcapi
    _testcapi.run_in_subinterp(code("legacy"))
    tried.append("legacy")
    # 2. the subinterpreters module of this version (isolated on 3.12+)
    try:
        import _interpreters as subi          # 3.13+
    except ImportError:
        try:
            import _xxsubinterpreters as subi  # 3.10 - 3.12
        except ImportError:
            subi = None
    if subi is not None:
        interp = subi.create()
        try:
            subi.run_string(interp, code(subi.__name__))
        finally:
            subi.destroy(interp)
        tried.append(subi.__name__)

    with open(out_path) as f:
        results = [json.loads(line) for line in f if line.strip()]
    os.unlink(out_path)
    emit(tried=tried, results=results)

    # The main interpreter's engine: the leader still leads in the same term,
    # the engine thread runs, and a new node gets elected with its callback
    # delivered by the dispatcher.
    token_after = a.token
    still = a.is_leader
    stats_after = redlease.engine_stats()
    elected_b = threading.Event()
    b = redlease.DistributionNode(url, key, ttl=30.0, retry_interval=0.2,
                                  on_elected=lambda tok: elected_b.set())
    b.start()
    a.stop()
    b_led = b.wait_for_leadership(20)
    b_cb = elected_b.wait(20)
    emit(still_leader=still, token_after=token_after, stats_after=stats_after,
         b_elected=b_led, b_callback=b_cb, b_id=b.node_id)
    b.stop()
    emit(done=True)
""")


def test_import_in_subinterpreter_raises_and_main_keeps_working(rl, redis_server, run_script,
                                                                   key):
    out = Output(run_script(SUBINTERP_SCRIPT, redis_server.url(), key))
    first = out.wait_json("leader", 60)
    assert first["stats_before"]["threads"] >= 1, first

    sub = out.wait_json("tried", 60)
    assert "legacy" in sub["tried"], sub
    by_how = {r["how"]: r for r in sub["results"]}
    # every subinterpreter tried has reported, and none imported redlease
    assert sorted(by_how) == sorted(sub["tried"]), sub
    for how, res in by_how.items():
        assert res["raised"] == "ImportError", (how, res)
    # the legacy kind is stopped by redlease's own check: the message says why
    assert "only the main interpreter" in by_how["legacy"]["msg"], by_how["legacy"]
    for how, res in by_how.items():
        assert "interpreter" in res["msg"], (how, res)

    after = out.wait_json("still_leader", 60)
    assert after["still_leader"] is True, after
    assert after["token_after"] == first["token"], after
    assert after["stats_after"]["threads"] >= 1, after
    assert after["b_elected"] is True and after["b_callback"] is True, after
    out.wait_json("done", 60)
    assert out.wait_exit(30) == 0, out.stderr()
    assert redis_server.cmd("GET", key) is None, "the last node released the key at stop()"


def test_module_is_importable_in_the_main_interpreter(rl):
    # the check must never refuse the main interpreter (a fresh import of the
    # extension is done by every child script too; this is the in-process one)
    from redlease import _redlease
    assert _redlease.LeaseBase is not None
    assert json.dumps(rl.engine_stats())
