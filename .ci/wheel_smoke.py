"""Helpers for .ci/wheel_smoke.sh: copy a source tree, check a build log, run the installed semon.

Subcommands (stdlib only until ``smoke``, which runs under the fresh virtualenv's Python):

``copy-git SRC DEST``        files git knows (tracked + untracked, not ignored): the source as committed
``copy-docker SRC DEST``     what ``COPY . /src`` copies: every file on disk minus .dockerignore
``check-build-log LOG``      fail on any setuptools / distutils warning in ``pip wheel -v`` output
``smoke --checkout DIR …``   the installed package, from the current directory (outside the checkout):
                             files it reads at run time, ``semon collect`` + ``semon api`` against a
                             Mosquitto raising and serving one trapped-passenger alarm, the board,
                             ``semon dashboards push``, and (``--demo``) ``semon demo``.

Every wait polls against a deadline; any failure prints what was expected, what was seen and
the tail of each process log, and exits 1. Not under tests/: pytest in the checkout never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

T_START = time.monotonic()


class SmokeFailure(Exception):
    """One check failed; the message says what was expected and what was seen."""


def say(msg: str) -> None:
    print(f"wheel-smoke [{time.monotonic() - T_START:6.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------------------ source copies
def copy_git(src: Path, dest: Path) -> int:
    """Copy the files git lists (tracked and untracked-but-not-ignored) that exist on disk."""
    out = subprocess.run(
        ["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    n = 0
    for rel in sorted({p for p in out.decode().split("\0") if p}):
        f = src / rel
        if not f.is_file():  # deleted in the work tree, not committed yet
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / rel, follow_symlinks=False)
        n += 1
    return n


def _pattern_regex(pat: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over /-separated paths."""
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pat.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and "]" in pat[i + 1 :]:
            j = pat.index("]", i + 1)
            body = pat[i + 1 : j]
            out += "[" + ("^" + body[1:] if body[:1] in ("^", "!") else body).replace("\\", "\\\\") + "]"
            i = j
        elif c == "\\" and i + 1 < len(pat):
            out, i = out + re.escape(pat[i + 1]), i + 1
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def dockerignore(ctx: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) for each line of ``ctx/.dockerignore``, in order."""
    f = ctx / ".dockerignore"
    pats = []
    for raw in f.read_text().splitlines() if f.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        line = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        pats.append((neg, _pattern_regex(line)))
    return pats


def docker_excluded(rel: str, pats: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for neg, rx in pats:
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not neg
    return excluded


def copy_docker(ctx: Path, dest: Path) -> int:
    """What ``COPY . /src`` puts in the image: the build context less .dockerignore."""
    pats = dockerignore(ctx)
    can_prune = not any(neg for neg, _ in pats)
    n = 0
    for root, dirs, files in os.walk(ctx):
        base = Path(root).relative_to(ctx)
        if can_prune:
            dirs[:] = [d for d in dirs if not docker_excluded((base / d).as_posix(), pats)]
        for name in files:
            rel = (base / name).as_posix()
            if docker_excluded(rel, pats):
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(root) / name, dest / rel, follow_symlinks=False)
            n += 1
    return n


# ------------------------------------------------------------------------------ build log
# Python warnings (BuildBackendWarning, SetuptoolsDeprecationWarning…), setuptools' "Package
# would be ignored" box and distutils' "warning: …" lines. pip's own "WARNING: …" lines are
# about this machine's index configuration, not the package, and are not matched.
BUILD_WARNING = re.compile(r"[A-Za-z]+Warning\b|would be ignored|^\s*warning:")


def check_build_log(log: Path) -> int:
    hits = [line for line in log.read_text(errors="replace").splitlines() if BUILD_WARNING.search(line)]
    for line in hits:
        print(f"build warning: {line.strip()}")
    if hits:
        print(f"wheel-smoke FAILED: {len(hits)} warning line(s) in the wheel build ({log})", file=sys.stderr)
        return 1
    print("wheel-smoke: wheel build printed no setuptools warnings")
    return 0


# ------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: str, timeout: float, probe: Callable[[], Any], *, interval: float = 0.2) -> Any:
    """Call ``probe`` until it returns something truthy; fail with the last thing it saw."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            got = probe()
            if got:
                return got
            last = got
        except Exception as e:  # the service may not be up yet: keep trying until the deadline
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise SmokeFailure(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class Proc:
    """A child process with its output in a log file."""

    procs: list[Proc] = []  # noqa: RUF012 - registry of everything started, for the failure report

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        self.fh = open(self.log, "wb")  # closed in stop()
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.fh, stderr=subprocess.STDOUT)
        Proc.procs.append(self)

    def alive(self) -> bool:
        return self.p.poll() is None

    def require_alive(self) -> None:
        if not self.alive():
            raise SmokeFailure(f"{self.name} exited early with code {self.p.returncode}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal, wait up to ``timeout``, kill if still there; returns the exit code."""
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired as e:
                self.p.kill()
                self.p.wait(10)
                self.fh.close()
                raise SmokeFailure(
                    f"{self.name} did not stop within {timeout:.0f}s of {signal.Signals(sig).name}"
                ) from e
        self.fh.close()
        return self.p.returncode

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def run(argv: list[str], env: dict[str, str], cwd: Path, what: str, timeout: float = 60.0) -> str:
    """Run a one-shot command; fail with its output unless it exits 0."""
    try:
        r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SmokeFailure(f"{what}: `{' '.join(argv)}` still running after {timeout:.0f}s") from e
    if r.returncode != 0:
        raise SmokeFailure(f"{what}: `{' '.join(argv)}` exited {r.returncode}\n{r.stdout}{r.stderr}".rstrip())
    return r.stdout


def http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def clean_env(bin_dir: Path) -> dict[str, str]:
    """The environment minus anything that could point semon back at the checkout or its settings."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("SEMON_") and k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }  # fmt: skip
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["SEMON_LOG_LEVEL"] = "INFO"
    return env


# ------------------------------------------------------------------------------ checks
def check_installed_files(checkout: Path) -> None:
    """semon comes from this environment, and every file it reads at run time is there."""
    import importlib.resources as res

    import semon
    from semon.dashboards.push import default_dashboards_dir, load_dashboards
    from semon.rules.catalog import CATALOG_FILE, Catalog
    from semon.rules.codes import CODES_FILE, CodeTable
    from semon.rules.maintenance.policy import default_policy_path
    from semon.store.db import MIGRATIONS_DIR

    pkg = Path(semon.__file__).resolve().parent
    site = Path(sys.prefix).resolve()
    if not pkg.is_relative_to(site):
        raise SmokeFailure(f"semon imported from {pkg}, not from this environment ({site})")
    # Every semon module loaded so far, wherever it came from.
    for name, mod in sorted(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if name.split(".")[0] == "semon" and f and Path(f).resolve().is_relative_to(checkout):
            raise SmokeFailure(f"{name} was imported from the checkout ({f})")
    for entry in sys.path:
        if entry and Path(entry).resolve().is_relative_to(checkout):
            raise SmokeFailure(f"the checkout is on sys.path ({entry})")
    needed = {
        "rule catalog": CATALOG_FILE,
        "code tables": CODES_FILE,
        "maintenance policy": default_policy_path(),
        "alembic env.py": MIGRATIONS_DIR / "env.py",
        "alembic script.py.mako": MIGRATIONS_DIR / "script.py.mako",
    }
    for what, f in needed.items():
        if not Path(f).is_file():
            raise SmokeFailure(f"{what} missing from the install: {f}")
    for what, got, want in (
        ("migration versions", sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py")),
         sorted(p.name for p in (checkout / "core/migrations/versions").glob("0*.py"))),
        ("contract schemas", sorted(p.name for p in (pkg / "contract/schemas").glob("*.json")),
         sorted(p.name for p in (checkout / "core/contract/schemas").glob("*.json"))),
        ("board assets", sorted(p.name for p in res.files("semon.api").joinpath("static/board").iterdir()),
         sorted(p.name for p in (checkout / "api/static/board").iterdir())),
        ("dashboards", sorted(p.name for p in default_dashboards_dir().iterdir() if p.name.endswith(".json")),
         sorted(p.name for p in (checkout / "dashboards/json").glob("*.json"))),
    ):  # fmt: skip
        if got != want:
            raise SmokeFailure(f"{what}: the install has {got}, the source tree {want}")
    if not Path(str(default_dashboards_dir())).resolve().is_relative_to(pkg):
        raise SmokeFailure(f"dashboards found at {default_dashboards_dir()}, not in the package {pkg}")
    n_rules = len(Catalog().defs)
    CodeTable()
    n_boards = len(load_dashboards(default_dashboards_dir()))
    say(
        f"semon {semon.__version__} from {pkg}: catalog ({n_rules} rules), codes, policy, migrations, schemas, "
        f"board assets, {n_boards} dashboards"
    )


MOSQUITTO_BINARIES = ("mosquitto", "/usr/sbin/mosquitto")


def start_mosquitto(template: Path, work: Path, logs: Path) -> tuple[Proc, int]:
    exe = next((shutil.which(b) for b in MOSQUITTO_BINARIES if shutil.which(b)), None)
    if exe is None:
        raise SmokeFailure("mosquitto not installed (apt-get install mosquitto); .ci/run installs it")
    port = free_port()
    (work / "mosquitto").mkdir()
    conf = work / "mosquitto" / "mosquitto.conf"
    conf.write_text(template.read_text().format(port=port, persistence_dir=work / "mosquitto"))
    proc = Proc("mosquitto", [exe, "-c", str(conf)], dict(os.environ), work, logs)

    def accepting() -> bool:
        proc.require_alive()
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    poll(f"Mosquitto on 127.0.0.1:{port}", 15, accepting)
    return proc, port


def elevator_status(ts: int, seq: int, **kw: Any) -> bytes:
    """A contract-v1 elevator status (the fields of tests/helpers.py elevator_payload)."""
    p = dict(
        ts=ts, seq=seq, mode="normal", running=False, dir="stop", floor=3, door_zone=True, door="closed",
        occupied=False, speed=0.0, load=0.0, run_count=10, run_hours=1.5,
    )  # fmt: skip
    p.update(kw)
    return json.dumps(p).encode()


def publish(port: int, msgs: list[tuple[str, bytes]], client_id: str) -> None:
    """QoS 1; returns once the broker acknowledged every message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=1) for t, p in msgs]
        for i in infos:
            i.wait_for_publish(15)
            if not i.is_published():
                raise SmokeFailure(f"the broker did not acknowledge a publish to {msgs[0][0]} within 15 s")
    finally:
        c.disconnect()
        c.loop_stop()


class FakeGrafana:
    """Just enough of Grafana's HTTP API for ``semon dashboards push`` to create everything."""

    def __init__(self, token: str) -> None:
        self.posted: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                path = self.path.split("?")[0]
                if path in ("/api/frontend/settings", "/api/health"):
                    status, out = 200, {"buildInfo": {"version": "11.2.0"}, "database": "ok", "version": "11.2.0"}
                elif self.headers.get("Authorization") != f"Bearer {token}":
                    status, out = 401, {"message": "Unauthorized"}
                elif self.command == "GET":
                    status, out = 404, {"message": "not found"}  # a Grafana with nothing in it yet
                elif self.command == "POST" and path == "/api/dashboards/db":
                    fake.posted.append(body["dashboard"])
                    status, out = 200, {"id": len(fake.posted), "uid": body["dashboard"]["uid"], "status": "success"}
                elif self.command == "POST" and path in ("/api/folders", "/api/datasources"):
                    status, out = 200, {"id": 1, **(body or {})}
                else:
                    status, out = 404, {"message": f"no route {self.command} {path}"}
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def smoke_collect_api(checkout: Path, work: Path, logs: Path) -> None:
    """Mosquitto → ``semon collect`` → SQLite → ``semon api``: one trapped-passenger alarm, served."""
    bin_dir = Path(sys.prefix) / "bin"
    semon = str(bin_dir / "semon")
    env = clean_env(bin_dir)
    # As in the image: run from the data directory, state under SEMON_DATA_DIR, SQLite by default.
    env["SEMON_DATA_DIR"] = str(work / "semon-data")
    mosq, mqtt_port = start_mosquitto(checkout / "config/mosquitto/mosquitto-test.conf.template", work, logs)
    env["SEMON_MQTT_URL"] = f"mqtt://127.0.0.1:{mqtt_port}"
    api_port, health_port = free_port(), free_port()
    env["SEMON_API_PORT"] = str(api_port)

    # The compose file's seed service: a registry CSV from the simulator, imported.
    run([semon, "simulate", "--elevators", "2", "--vessels", "1", "--registry", "registry.csv", "--registry-only"],
        env, work, "write a registry")  # fmt: skip
    run([semon, "devices", "import", "registry.csv"], env, work, "import the registry")
    token = run([semon, "keys", "create", "wheel-smoke", "--role", "regulator"], env, work, "create an API key")
    token = token.strip().splitlines()[-1]
    say("registry imported (E000001, E000002, V000001), API key created")

    collector = Proc("collector", [semon, "collect", "--health-port", str(health_port)], env, work, logs)
    api = Proc("api", [semon, "api"], env, work, logs)
    base = f"http://127.0.0.1:{api_port}"

    def collector_ok() -> bool:
        collector.require_alive()
        code, body = http_get(f"http://127.0.0.1:{health_port}/health")
        return code == 200 and json.loads(body).get("mqtt_connected") is True

    def api_ok() -> bool:
        api.require_alive()
        return http_get(f"{base}/health")[0] == 200

    poll("the collector's /health (connected to the broker)", 30, collector_ok)
    poll("the API's /health", 30, api_ok)
    say(f"semon collect (health :{health_port}) and semon api (:{api_port}) are up")

    device, topic = "E000001", "semon/v1/elevator/E000001/status"
    t0 = int(time.time() * 1000) - 60_000
    # One status first, until the API shows it: the collector's subscription is live end to end.
    probes = iter(range(1, 10_000))

    def probe_seen() -> bool:
        collector.require_alive()
        k = next(probes)
        publish(mqtt_port, [(topic, elevator_status(t0 - 5_000 + k, k))], "wheel-smoke-probe")
        code, _ = http_get(f"{base}/devices/{device}/latest", token)
        return code == 200

    poll(f"a status of {device} to reach /devices/{device}/latest", 30, probe_seen, interval=1.0)
    # Stopped between floors' doors closed with a passenger for 28 s of device time (rule: ≥ 20 s).
    stream = [(topic, elevator_status(t0 + i * 1000, 10_000 + i, occupied=i >= 2)) for i in range(30)]
    publish(mqtt_port, stream, "wheel-smoke-device")
    say(f"published {len(stream)} statuses of a passenger trapped in {device}")

    def trapped_alarm() -> dict[str, Any] | None:
        collector.require_alive()
        api.require_alive()
        code, body = http_get(f"{base}/alarms?type=trapped_passenger", token)
        if code != 200:
            raise SmokeFailure(f"GET /alarms answered {code}: {body[:300]!r}")
        items = json.loads(body)["items"]
        return next((a for a in items if a["device_id"] == device), None)

    alarm = poll(f"GET /alarms to list a trapped_passenger alarm on {device}", 30, trapped_alarm)
    if not (alarm["active"] and alarm["severity"] == "critical" and alarm["rule_id"] == "elevator.trapped_passenger"):
        raise SmokeFailure(f"unexpected alarm: {alarm}")
    say(f"GET /alarms: {alarm['type']} #{alarm['id']} on {alarm['device_id']}, {alarm['severity']}, active")

    # The built-in board: page and assets come from the package.
    for path, marker in (("/board", b"<html"), ("/board/assets/board.js", b"EventSource")):
        code, body = http_get(base + path)
        if code != 200 or marker not in body:
            raise SmokeFailure(f"GET {path} answered {code}, {len(body)} bytes without {marker!r}")
    say("GET /board and /board/assets/board.js served from the package")

    # `semon dashboards push` reads the boards shipped in the package.
    want = sorted(json.loads(f.read_text())["uid"] for f in (checkout / "dashboards/json").glob("*.json"))
    grafana = FakeGrafana("wheel-smoke-token")
    try:
        push = [semon, "dashboards", "push", "--url", grafana.url, "--token", "wheel-smoke-token",
                "--influx-url", "http://127.0.0.1:8086", "--no-device-info"]  # fmt: skip
        out = run(push, env, work, "semon dashboards push")
        got = sorted(b["uid"] for b in grafana.posted)
    finally:
        grafana.close()
    if got != want:
        raise SmokeFailure(f"semon dashboards push sent boards {got}, expected {want}\n{out}")
    say(f"semon dashboards push sent the {len(got)} packaged boards {got}")

    # uvicorn re-raises the SIGTERM it handled once it has shut down, so the API may end "killed
    # by SIGTERM" after a clean shutdown; its log says which.
    rc = api.stop()
    if rc not in (0, -signal.SIGTERM) or "Application shutdown complete" not in api.tail(5):
        raise SmokeFailure(f"semon api exited {rc} on SIGTERM without a clean shutdown")
    rc = collector.stop()
    if rc != 0:
        raise SmokeFailure(f"semon collect exited {rc} on SIGTERM (expected a clean stop, 0)")
    mosq.stop()
    say("collector and API stopped cleanly")


def start_demo(work: Path, logs: Path) -> tuple[Proc, str]:
    """``semon demo`` on the embedded defaults (amqtt broker, SQLite), started before the other
    checks so its simulated passenger is trapped long enough by the time they are done."""
    bin_dir = Path(sys.prefix) / "bin"
    env = clean_env(bin_dir)
    api_port = free_port()
    env["SEMON_API_PORT"], env["SEMON_MQTT_EMBEDDED_PORT"] = str(api_port), str(free_port())
    (work / "demo").mkdir()
    return Proc("demo", [str(bin_dir / "semon"), "demo"], env, work / "demo", logs), f"http://127.0.0.1:{api_port}"


def finish_demo(demo: Proc, base: str) -> None:
    """The demo's trapped passenger (E000003, 5 s in; the rule needs 20 s) is listed; Ctrl-C stops it."""

    def trapped() -> dict[str, Any] | None:
        demo.require_alive()
        code, body = http_get(f"{base}/alarms?type=trapped_passenger")
        if code != 200:
            return None
        return next((a for a in json.loads(body)["items"] if a["device_id"] == "E000003"), None)

    alarm = poll("semon demo to raise its trapped_passenger alarm on E000003", 90, trapped, interval=0.5)
    say(f"semon demo: GET /alarms lists {alarm['type']} #{alarm['id']} on {alarm['device_id']}")
    rc = demo.stop(signal.SIGINT, timeout=30)
    if rc != 0 or "stopped cleanly" not in demo.tail(5):
        raise SmokeFailure(f"semon demo exited {rc} on Ctrl-C without 'stopped cleanly'")
    say("semon demo stopped cleanly")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("copy-git", "copy-docker"):
        c = sub.add_parser(name)
        c.add_argument("src", type=Path)
        c.add_argument("dest", type=Path)
    sub.add_parser("check-build-log").add_argument("log", type=Path)
    sm = sub.add_parser("smoke")
    sm.add_argument("--checkout", type=Path, required=True, help="the source tree (expected file lists, config/)")
    sm.add_argument("--logs", type=Path, required=True, help="where process logs go")
    sm.add_argument("--demo", action="store_true", help="also run `semon demo` until its trapped alarm shows")
    a = ap.parse_args()
    if a.cmd in ("copy-git", "copy-docker"):
        a.dest.mkdir(parents=True, exist_ok=False)
        n = (copy_git if a.cmd == "copy-git" else copy_docker)(a.src.resolve(), a.dest)
        print(f"wheel-smoke: {a.cmd}: {n} files → {a.dest}")
        return 0
    if a.cmd == "check-build-log":
        return check_build_log(a.log)
    checkout, work = a.checkout.resolve(), Path.cwd().resolve()
    if work.is_relative_to(checkout):
        print(f"wheel-smoke FAILED: run the smoke from outside the checkout, not {work}", file=sys.stderr)
        return 2
    a.logs.mkdir(parents=True, exist_ok=True)
    try:
        check_installed_files(checkout)
        demo = start_demo(work, a.logs) if a.demo else None
        smoke_collect_api(checkout, work, a.logs)
        if demo:
            finish_demo(*demo)
    except SmokeFailure as e:
        print(f"wheel-smoke FAILED: {e}", file=sys.stderr)
        for p in Proc.procs:
            print(f"--- {p.name} ({p.log}), last lines:\n{p.tail()}", file=sys.stderr)
        return 1
    finally:
        for p in Proc.procs:
            if p.alive():
                p.p.kill()
                p.p.wait(10)
    say("installed package runs: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
