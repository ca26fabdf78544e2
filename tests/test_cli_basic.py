"""The redlease command line: entry points, --help, usage errors and ``status``."""
from __future__ import annotations

import json
import os

import pytest

from helpers.cli_fixtures import cli, console_script, no_traceback  # noqa: F401

COMMANDS = ("status", "watch", "run", "demo")


@pytest.mark.node_timeout(30)
def test_python_m_redlease_help(cli):
    rc, out, err = cli.run("--help")
    assert rc == 0, err
    assert "usage:" in out and "python -m redlease" in out
    for cmd in COMMANDS:
        assert cmd in out
    # the exit codes are documented in the epilog
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert code in out.split("exit codes:")[1]


@pytest.mark.node_timeout(30)
@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(cli, command):
    rc, out, err = cli.run(command, "--help")
    assert rc == 0, err
    assert f"redlease {command}" in out
    assert "exit codes:" in out


@pytest.mark.node_timeout(30)
def test_console_script(cli):
    script = console_script()
    assert os.path.exists(script), f"console script not installed at {script}"
    rc, out, err = cli.run("--version", argv0=[script])
    assert rc == 0, err
    assert out.startswith("redlease ")


@pytest.mark.node_timeout(30)
def test_module_docstring_documents_exit_codes(rl):
    import redlease.cli as cli_mod
    doc = cli_mod.__doc__
    assert "Exit codes:" in doc
    for text in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert text in doc


@pytest.mark.node_timeout(30)
@pytest.mark.parametrize("args", [
    ("nosuchcommand",),
    ("status",),                      # KEY missing
    ("run", "somekey"),               # CMD missing
    ("run", "somekey", "--ttl", "-1", "--", "true"),
    ("watch", "k", "--count", "0"),
    ("demo", "--nodes", "1"),
])
def test_usage_errors_exit_2(cli, args):
    rc, out, err = cli.run(*args)
    assert rc == 2, (out, err)
    assert "usage:" in err
    assert no_traceback(err)


@pytest.mark.node_timeout(30)
def test_status_free_key(cli, redis_server, key):
    rc, out, err = cli.run("status", key, "--url", redis_server.url())
    assert rc == 3, err
    assert key in out and "not held" in out

    rc, out, err = cli.run("status", key, "--json", "--url", redis_server.url())
    assert rc == 3, err
    obj = json.loads(out)
    assert obj == {"key": key, "exists": False, "holder": None, "ttl": None, "token": None}


@pytest.mark.node_timeout(30)
def test_status_held_then_released(cli, redis_server, make_node, key):
    node = make_node(redis_server.url(), node_id="alpha", ttl=5.0)
    node.start()
    assert node.wait_for_leadership(10)
    token = node.token

    rc, out, err = cli.run("status", key, "--url", redis_server.url())
    assert rc == 0, err
    assert "held by alpha" in out and str(token) in out
    assert len(out.splitlines()) == 1

    # --url after or before the command, or $REDIS_URL: all the same
    rc, out, err = cli.run("--url", redis_server.url(), "status", key, "--json")
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["key"] == key and obj["exists"] is True and obj["holder"] == "alpha"
    assert obj["token"] == token
    assert 0 < obj["ttl"] <= 5.0

    rc, out, err = cli.run("status", key, "--json", env=cli.env({"REDIS_URL": redis_server.url()}))
    assert rc == 0, err
    assert json.loads(out)["holder"] == "alpha"

    node.stop()
    rc, out, err = cli.run("status", key, "--json", "--url", redis_server.url())
    assert rc == 3, err
    obj = json.loads(out)
    assert obj["exists"] is False and obj["holder"] is None and obj["ttl"] is None
    assert obj["token"] == token      # the last token issued for the key stays known


@pytest.mark.node_timeout(30)
def test_status_key_without_expiry(cli, redis_server, key):
    redis_server.cmd("SET", key, "manual")
    rc, out, err = cli.run("status", key, "--json", "--url", redis_server.url())
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["holder"] == "manual" and obj["exists"] is True and obj["ttl"] is None


@pytest.mark.node_timeout(30)
def test_status_errors_exit_1_without_password(cli, redis_factory, key):
    srv = redis_factory(password="s3cret-pw")
    url = f"redis://:wrong-pw@127.0.0.1:{srv.port}/0"
    rc, out, err = cli.run("status", key, "--url", url)
    assert rc == 1
    assert "authentication" in err.lower()
    assert "wrong-pw" not in err + out
    assert no_traceback(err)

    rc, out, err = cli.run("status", key, "--url", "redis://:pw-x@127.0.0.1:1/0",
                           "--timeout", "2")
    assert rc == 1
    assert "cannot reach" in err and "pw-x" not in err + out
    assert no_traceback(err)

    rc, out, err = cli.run("status", key, "--url", "nosuch://:pw-y@host/0")
    assert rc == 1
    assert "pw-y" not in err + out
    assert no_traceback(err)


@pytest.mark.node_timeout(30)
def test_default_url_is_redis_url_env(cli, redis_server, key):
    redis_server.cmd("SET", key, "from-env", "PX", 60000)
    rc, out, err = cli.run("status", key, env=cli.env({"REDIS_URL": redis_server.url()}))
    assert rc == 0, err
    assert "held by from-env" in out


@pytest.mark.parametrize("url,masked", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
    ("redis://user:p@ss/w:rd@h:1/2", "redis://user:***@h:1/2"),
    ("redis://user@h/0", "redis://user@h/0"),
    ("unix:///run/r.sock?db=1&password=pw", "unix:///run/r.sock?db=1&password=***"),
])
def test_mask_url(rl, url, masked):
    from redlease.cli import mask_url
    assert mask_url(url) == masked


def test_run_command_line_split(rl):
    from redlease.cli import parse_args
    a = parse_args(["--url", "redis://h/0", "run", "k", "--ttl", "3", "--", "cmd", "--ttl", "--"])
    assert (a.key, a.ttl, a.cmd, a.url) == ("k", 3.0, ["cmd", "--ttl", "--"], "redis://h/0")
    a = parse_args(["run", "k", "sleep", "1"])
    assert a.cmd == ["sleep", "1"] and a.ttl == 10.0 and a.grace is None and not a.restart
    a = parse_args(["status", "--", "-odd-key"])       # '--' elsewhere keeps its usual meaning
    assert a.key == "-odd-key"


@pytest.mark.node_timeout(30)
def test_status_escapes_control_characters(cli, redis_server, make_node, key):
    node = make_node(redis_server.url(), node_id="evil\nFAKE: held by nobody\x1b[2J", ttl=5.0)
    node.start()
    assert node.wait_for_leadership(10)
    rc, out, err = cli.run("status", key, "--url", redis_server.url())
    assert rc == 0, err
    assert len(out.splitlines()) == 1, out
    assert "evil\\nFAKE" in out and "\x1b" not in out and "\\x1b[2J" in out
    rc, out, err = cli.run("status", key, "--json", "--url", redis_server.url())
    assert json.loads(out)["holder"] == "evil\nFAKE: held by nobody\x1b[2J"   # JSON is exact
