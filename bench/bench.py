#!/usr/bin/env python3
"""secure-api vs the reference limit server, side by side on 127.0.0.1.

Driven by bench/run (which installs wrk/h2load and builds the release
binaries); see bench/README.md. Standard library only. Progress goes to
stderr; stdout gets exactly one Markdown table; the same figures go to a
JSON file.
"""

import argparse
import datetime
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SA_BIN = os.path.join(ROOT, "target/release/secure-api")
HASH_BIN = os.path.join(ROOT, "target/release/examples/hash_timing")
LIMIT_BIN = os.path.join(ROOT, "target/limit-server/release/limit")

USER = {
    "username": "benchuser",
    "email": "bench@example.com",
    "password": "Quartz-Lattice-9!Bench",
}

PROCS = []  # every child process started, for the exit cleanup


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# processes


def child_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("SECURE_API_", "LIMIT_")) or k in ("CREDENTIALS_DIRECTORY", "RUST_LOG"):
            del env[k]
    return env


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, env=child_env(), **kw)
    PROCS.append(p)
    return p


def stop(p, grace=15.0):
    """SIGTERM, wait, then SIGKILL; only this process, by its id."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} ignored SIGTERM for {grace}s; killing it")
            p.kill()
            p.wait(timeout=5)
    if p in PROCS:
        PROCS.remove(p)
    return p.returncode


def cleanup():
    for p in list(PROCS):
        try:
            stop(p, grace=12.0)
        except Exception as e:  # keep going: leave nothing running
            log(f"cleanup of pid {p.pid}: {e}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clk_tck():
    try:
        return int(subprocess.run(["getconf", "CLK_TCK"], capture_output=True, text=True,
                                  timeout=5).stdout.strip())
    except Exception:
        return os.sysconf("SC_CLK_TCK")


CLK_TCK = clk_tck()


def cpu_seconds(pid):
    """utime+stime of the whole process (all threads) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def wait_idle(pid, max_wait=20.0, quiet=0.05):
    """Wait until the process uses less than `quiet` CPU s per 0.5 s (queued
    Argon2 work from a flood finishes after its clients are gone)."""
    t0 = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - t0 < max_wait:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < quiet:
            return time.monotonic() - t0
        last = now
    log(f"pid {pid} still busy after {max_wait}s")
    return max_wait


class Server:
    def __init__(self, name, cmd, tmp, ready_stream, ready_test):
        self.name = name
        self.out_path = os.path.join(tmp, f"{name}.stdout.log")
        self.err_path = os.path.join(tmp, f"{name}.stderr.log")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.t0 = time.perf_counter()
        self.p = spawn(cmd, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)
        self.pid = self.p.pid
        path = self.out_path if ready_stream == "stdout" else self.err_path
        deadline = time.monotonic() + 60
        while True:
            if self.p.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.p.returncode}: "
                                   + open(self.err_path, errors="replace").read()[-2000:])
            with open(path, errors="replace") as f:
                if any(ready_test(line) for line in f):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within 60 s")
            time.sleep(0.02)
        self.ready_s = time.perf_counter() - self.t0

    def stop(self):
        rc = stop(self.p)
        self.out.close()
        self.err.close()
        return rc


def sa_ready(line):
    if '"address"' not in line:
        return False
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return "address" in obj or "address" in obj.get("fields", {})


def limit_ready(line):
    return "limit listening on" in line


def start_sa(name, tmp, data, port, extra=()):
    # Every load generator connects from 127.0.0.1, and its floods and
    # slowloris sets stand for many clients: the per-client connection cap
    # (64 by default) would refuse all but the first 64.
    cmd = [SA_BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
           "--max-connections-per-ip", "1000000", *extra]
    s = Server(name, cmd, tmp, "stdout", sa_ready)
    s.port = port
    log(f"secure-api [{name}] pid {s.pid} ready on {port} after {s.ready_s * 1000:.0f} ms")
    return s


def start_limit(name, tmp, port, cert, key):
    cmd = [LIMIT_BIN, "--listen", f"127.0.0.1:{port}", "--cert", cert, "--key", key]
    s = Server(name, cmd, tmp, "stderr", limit_ready)
    s.port = port
    log(f"limit server [{name}] pid {s.pid} ready on {port} after {s.ready_s * 1000:.0f} ms")
    return s


def time_to_ready(cmd, stream, test, timeout=60.0):
    """Seconds from exec to the ready line, read from a pipe; then SIGTERM."""
    t0 = time.perf_counter()
    p = spawn(cmd, stdin=subprocess.DEVNULL,
              stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
              stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL)
    pipe = p.stdout if stream == "stdout" else p.stderr
    buf = b""
    elapsed = None
    deadline = time.monotonic() + timeout
    while elapsed is None and time.monotonic() < deadline:
        r, _, _ = select.select([pipe], [], [], 0.5)
        if not r:
            if p.poll() is not None:
                break
            continue
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if test(line.decode(errors="replace")):
                elapsed = time.perf_counter() - t0
                break
    # keep draining while it shuts down so it never blocks on a full pipe
    drainer = threading.Thread(target=lambda: pipe.read(), daemon=True)
    drainer.start()
    stop(p)
    drainer.join(timeout=5)
    if elapsed is None:
        raise RuntimeError(f"{cmd[0]} never said it was ready")
    return elapsed


# --------------------------------------------------------------------------
# HTTP over TLS (stdlib)


def client_ctx(alpn=("http/1.1",)):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class H1:
    """One keep-alive HTTP/1.1 connection over TLS."""

    def __init__(self, port, timeout=10.0):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = client_ctx().wrap_socket(sock, server_hostname="localhost")
        self.buf = b""

    def request(self, method, path, body=None, headers=None):
        hdrs = {"Host": "localhost", "User-Agent": "secure-api-bench"}
        hdrs.update(headers or {})
        data = body.encode() if isinstance(body, str) else body
        if data is not None:
            hdrs["Content-Length"] = str(len(data))
            hdrs.setdefault("Content-Type", "application/json")
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.s.sendall(head.encode() + b"\r\n" + (data or b""))
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the response head")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        resp_headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            resp_headers.setdefault(k.strip().lower(), []).append(v.strip())
        if "chunked" in ",".join(resp_headers.get("transfer-encoding", [])).lower():
            raise RuntimeError("chunked responses are not expected here")
        n = int(resp_headers.get("content-length", ["0"])[0])
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside the body")
            self.buf += chunk
        rbody, self.buf = self.buf[:n], self.buf[n:]
        return status, resp_headers, rbody

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def api(port, method, path, obj=None, token=None):
    c = H1(port)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        st, _, body = c.request(method, path, json.dumps(obj) if obj is not None else None, headers)
        try:
            return st, json.loads(body) if body else None
        except ValueError:
            return st, body
    finally:
        c.close()


def login(port):
    st, body = api(port, "POST", "/api/v1/auth/login",
                   {"email": USER["email"], "password": USER["password"]})
    if st != 200:
        raise RuntimeError(f"login answered {st}: {body}")
    return body["access_token"]


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def health_latency(port, n=1000, warm=50):
    """n sequential GET /health on one keep-alive connection; µs p50/p99."""
    c = H1(port)
    try:
        for _ in range(warm):
            c.request("GET", "/health")
        samples = []
        bad = 0
        for _ in range(n):
            t = time.perf_counter()
            st, _, _ = c.request("GET", "/health")
            samples.append((time.perf_counter() - t) * 1e6)
            bad += st != 200
    finally:
        c.close()
    samples.sort()
    return {"n": n, "p50_us": pct(samples, 50), "p99_us": pct(samples, 99),
            "max_us": samples[-1], "non_200": bad}


# --------------------------------------------------------------------------
# load generators

LUA = r"""
-- generated by bench/bench.py
wrk.method = "__METHOD__"
__BODY__
__HEADERS__
local threads = {}
local LIMIT = __LIMIT__
local FLAG = __FLAG__
local COUNT = __COUNT__
local XFF = __XFF__
statuses = {}
counter = 0
responses = 0
tid = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

if XFF then
  function request()
    counter = counter + 1
    local n = tid * 4194304 + counter
    local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256,
                             math.floor(n / 256) % 256, n % 256)
    local h = {}
    for k, v in pairs(wrk.headers) do h[k] = v end
    h["X-Forwarded-For"] = ip
    return wrk.format(nil, nil, h)
  end
end

if COUNT then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    responses = responses + 1
    if LIMIT > 0 and responses == LIMIT then
      if FLAG then
        local f = io.open(FLAG .. tid, "w")
        if f then f:close() end
      end
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local agg, sent = {}, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do agg[k] = (agg[k] or 0) + v end
    end
    sent = sent + (t:get("counter") or 0)
  end
  local parts = {}
  for k, v in pairs(agg) do
    table.insert(parts, string.format('"%d":%d', k, v))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"mean":%.1f,"max":%.1f},' ..
    '"statuses":{%s},"sent":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, table.concat(parts, ","), sent))
end
"""


def lua_str(s):
    return "[==[" + s + "]==]"


def make_lua(tmp, name, method="GET", body=None, headers=None, count=False, xff=False,
             limit=0, flag=None):
    hdr_lines = "\n".join(f"wrk.headers[ {lua_str(k)} ] = {lua_str(v)}"
                          for k, v in (headers or {}).items())
    src = (LUA.replace("__METHOD__", method)
           .replace("__BODY__", f"wrk.body = {lua_str(body)}" if body is not None else "")
           .replace("__HEADERS__", hdr_lines)
           .replace("__LIMIT__", str(limit))
           .replace("__FLAG__", lua_str(flag) if flag else "nil")
           .replace("__COUNT__", "true" if count else "false")
           .replace("__XFF__", "true" if xff else "false"))
    path = os.path.join(tmp, f"{name}.lua")
    with open(path, "w") as f:
        f.write(src)
    return path


def wrk_cmd(port, path, script, duration, conns, threads, timeout="10s"):
    return ["wrk", "-t", str(min(threads, conns)), "-c", str(conns), "-d", f"{duration}s",
            "--timeout", timeout, "-s", script, f"https://127.0.0.1:{port}{path}"]


def wrk_result(p, out, err, what):
    m = re.search(r"^BENCHJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk ({what}) gave no result (rc {p.returncode}): {err[-1500:]} {out[-1500:]}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    return r


def run_wrk(port, path, script, duration, conns, threads, timeout="10s"):
    p = spawn(wrk_cmd(port, path, script, duration, conns, threads, timeout),
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        stop(p)
        raise RuntimeError("wrk did not finish in time")
    PROCS.remove(p)
    return wrk_result(p, out, err, path)


class Background:
    """A wrk run in the background (a flood next to a measurement)."""

    def __init__(self, port, path, script, duration, conns, threads, timeout="30s"):
        self.duration = duration
        self.p = spawn(wrk_cmd(port, path, script, duration, conns, threads, timeout),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self):
        try:
            out, err = self.p.communicate(timeout=self.duration + 60)
        except subprocess.TimeoutExpired:
            stop(self.p)
            raise RuntimeError("background wrk did not finish in time")
        PROCS.remove(self.p)
        return wrk_result(self.p, out, err, "background")


def measured(pids, fn):
    """Run fn() and add each pid's CPU seconds spent meanwhile."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    r = fn()
    r["server_cpu_s"] = {str(pid): cpu_seconds(pid) - before[pid] for pid in pids}
    return r


def run_h2load(port, path, duration, conns, threads):
    cmd = ["h2load", "-D", str(duration), "-c", str(conns), "-m", "10", "-t",
           str(min(threads, conns)), f"https://127.0.0.1:{port}{path}"]
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        stop(p)
        raise RuntimeError("h2load did not finish in time")
    PROCS.remove(p)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    fin = re.search(r"finished in ([\d.]+)(m?s)", out)
    if not m or not fin:
        raise RuntimeError(f"h2load output not understood: {out[-1500:]} {err[-800:]}")
    secs = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    proto = re.search(r"Application protocol: (\S+)", out)
    ok = int(m.group(4))
    return {"requests": ok, "failed": int(m.group(5)), "errored": int(m.group(6)),
            "seconds": secs, "rps": ok / secs if secs else 0.0,
            "protocol": proto.group(1) if proto else "?"}


# --------------------------------------------------------------------------
# slowloris


def open_slowloris(port, n):
    socks, failed = [], 0
    ctx = client_ctx()
    for _ in range(n):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"GET /health HT")  # a partial request line, then silence
            s.setblocking(False)
            socks.append((s, time.monotonic()))
        except OSError:
            failed += 1
    return socks, failed


def watch_closed(socks, until):
    """Until `until` (monotonic), note when the server closes each socket."""
    open_ = {s.fileno(): (s, t) for s, t in socks}
    closed_after = []
    while open_ and time.monotonic() < until:
        r, _, _ = select.select(list(open_), [], [], max(0.0, min(0.5, until - time.monotonic())))
        for fd in r:
            s, t = open_[fd]
            try:
                data = s.recv(4096)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue  # e.g. a TLS 1.3 session ticket
            except OSError:
                data = b""
            if not data:
                closed_after.append(time.monotonic() - t)
                del open_[fd]
            # a response (e.g. 408) would also count as the server acting; keep waiting for EOF
    return closed_after


def close_all(socks):
    for s, _ in socks:
        try:
            s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# log analysis


def analyze_log(path):
    res = {"lines": 0, "status": {}, "status_5xx_by_route": {}, "error_lines": 0,
           "warn_lines": 0, "error_messages": {}, "warn_messages": {}, "panic_lines": 0}
    if not os.path.exists(path):
        return res
    with open(path, errors="replace") as f:
        for line in f:
            res["lines"] += 1
            m = re.search(r'"status":(\d{3})\b', line)
            if m:
                st = m.group(1)
                res["status"][st] = res["status"].get(st, 0) + 1
                if st.startswith("5"):
                    r = re.search(r'"route":"([^"]*)"', line)
                    key = f"{st} {r.group(1) if r else '?'}"
                    res["status_5xx_by_route"][key] = res["status_5xx_by_route"].get(key, 0) + 1
            lvl = None
            if '"level":"ERROR"' in line:
                lvl = "error"
            elif '"level":"WARN"' in line:
                lvl = "warn"
            if "panic" in line.lower():
                res["panic_lines"] += 1
            if lvl:
                res[f"{lvl}_lines"] += 1
                mm = re.search(r'"message":"((?:[^"\\]|\\.)*)"', line)
                msg = (mm.group(1) if mm else line.strip())[:160]
                d = res[f"{lvl}_messages"]
                if msg in d or len(d) < 10:
                    d[msg] = d.get(msg, 0) + 1
    return res


def flush_lines(path):
    """The API key usage flushes a server logged (debug): count, keys, durations."""
    durations, keys = [], 0
    with open(path, errors="replace") as f:
        for line in f:
            if "API key usage written" not in line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            fields = obj.get("fields", obj)
            durations.append(int(fields.get("duration_us", 0)))
            keys += int(fields.get("keys", 0))
    durations.sort()
    return {"flushes": len(durations), "keys_written": keys,
            "duration_us_total": sum(durations),
            "duration_us_median": statistics.median(durations) if durations else None,
            "duration_us_max": durations[-1] if durations else None}


# --------------------------------------------------------------------------
# the run


def serve_defaults():
    out = subprocess.run([SA_BIN, "serve", "--help"], capture_output=True, text=True,
                         env=child_env(), timeout=30).stdout

    def default(flag, fallback):
        m = re.search(re.escape(flag) + r"\b.*?\[default: ([^\]]+)\]", out, re.S)
        return m.group(1).strip() if m else fallback

    return {
        "memory_kib": int(default("--argon2-memory-kib", "65536")),
        "time_cost": int(default("--argon2-time-cost", "3")),
        "parallelism": int(default("--argon2-parallelism", "4")),
        "hash_queue": int(default("--hash-queue", "32")),
    }


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": int(nproc) if nproc.isdigit() else len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": os.uname().release,
    }


def best(rounds, key, fn=max):
    return fn(r[key] for r in rounds)


def cpu_us_per_req(r, pid):
    return r["server_cpu_s"][str(pid)] * 1e6 / r["requests"] if r["requests"] else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run (10)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--rounds", type=int, default=2, help="A/B rounds for a and b (2)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/latest.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument("--secure-api-bin", help="use this secure-api binary (default: target/release)")
    ap.add_argument("--hash-timing-bin", help="use this hash_timing example binary")
    ap.add_argument("--limit-bin", help="use this limit server binary")
    args = ap.parse_args()
    global SA_BIN, HASH_BIN, LIMIT_BIN
    SA_BIN = os.path.abspath(args.secure_api_bin or SA_BIN)
    HASH_BIN = os.path.abspath(args.hash_timing_bin or HASH_BIN)
    LIMIT_BIN = os.path.abspath(args.limit_bin or LIMIT_BIN)

    for b in (SA_BIN, HASH_BIN, LIMIT_BIN):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: run bench/run (it builds the binaries)")
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}: run bench/run (it installs it)")

    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass

    D, C, T = args.duration, args.connections, args.threads
    mach = machine()
    cores = mach["nproc"]
    defaults = serve_defaults()
    workers = cores  # --hash-workers default: number of CPU cores
    tmp = tempfile.mkdtemp(prefix="secure-api-bench.")
    data = os.path.join(tmp, "data")
    results = {"machine": mach, "config": {
        "duration_s": D, "connections": C, "wrk_threads": T, "rounds": args.rounds,
        "aggregation": "best round per target (highest req/s, lowest CPU/request, lowest latency); "
                       "all rounds are in 'raw'",
        "secure_api_defaults": defaults, "hash_workers": workers}, "raw": {}, "logs": {}}
    raw = results["raw"]
    log(f"temp dir {tmp}; {cores} cores; duration {D}s; {C} connections")

    servers = []
    try:
        # ---- 2. data dir, certificate, user, token
        port_sa, port_limit = free_port(), free_port()
        sa = start_sa("main", tmp, data, port_sa, ["--rate-limit", "off"])
        servers.append(sa)
        cert, key = os.path.join(data, "tls-cert.pem"), os.path.join(data, "tls-key.pem")
        st, body = api(port_sa, "POST", "/api/v1/auth/register",
                       {"username": USER["username"], "email": USER["email"],
                        "password": USER["password"]})
        if st != 201:
            raise RuntimeError(f"register answered {st}: {body}")
        token = login(port_sa)
        lim = start_limit("limit", tmp, port_limit, cert, key)
        servers.append(lim)
        st, body = api(port_sa, "GET", "/api/v1/users/me", token=token)
        if st != 200:
            raise RuntimeError(f"/users/me answered {st}: {body}")

        plain = make_lua(tmp, "plain")
        def ab_rounds(key, label, targets, load):
            """A B A B over `targets` ((name, server, path), ...); `load(server, path)` runs one."""
            raw[key] = {name: [] for name, _, _ in targets}
            for rnd in range(args.rounds):
                for name, srv, path in targets:
                    log(f"{label}: GET {path} round {rnd + 1} on {name}")
                    r = measured([srv.pid], lambda: load(srv, path))
                    r["cpu_us_per_req"] = cpu_us_per_req(r, srv.pid)
                    raw[key][name].append(r)

        # ---- 4a. /health, HTTP/1.1 keep-alive
        health = (("secure_api", sa, "/health"), ("limit", lim, "/health"))
        ab_rounds("a_health", "a", health, lambda srv, path: run_wrk(srv.port, path, plain, D, C, T))
        # ---- 4a'. /health over HTTP/2 (h2load), for information
        ab_rounds("a_health_h2", "a' (h2)", health,
                  lambda srv, path: run_h2load(srv.port, path, D, C, T))

        # ---- 4b. /users/me with a token vs GET / on the limit server
        token = login(port_sa)
        me = make_lua(tmp, "me", headers={"Authorization": f"Bearer {token}"})
        with_me = lambda srv, path: run_wrk(srv.port, path, me, D, C, T)  # noqa: E731
        ab_rounds("b_me", "b", (("secure_api", sa, "/api/v1/users/me"), ("limit", lim, "/")),
                  with_me)

        # ---- 4b'. the same with the user cache off (every request reads SQLite), for information
        sa_nc = start_sa("nocache", tmp, data, free_port(),
                         ["--rate-limit", "off", "--user-cache-entries", "0"])
        servers.append(sa_nc)
        ab_rounds("b_me_nocache", "b' (user cache off)",
                  (("secure_api", sa_nc, "/api/v1/users/me"), ("limit", lim, "/")), with_me)
        sa_nc.stop()
        servers.remove(sa_nc)
        results["logs"]["nocache (b')"] = analyze_log(sa_nc.out_path)

        # ---- 4b''. /users/me with X-API-Key beside Bearer on one server, rate limits on
        # (so each path pays its own limiter: the key's GCRA, the address's), and the
        # cost of writing the keys' usage, read from its debug lines.
        high = "1000000/second"
        sa_k = start_sa("keys", tmp, data, free_port(),
                        ["--rate-limit", high, "--api-key-max-rate-limit", high,
                         "--log-level", "info,secure_api::app=debug"])
        servers.append(sa_k)
        key_token = login(sa_k.port)
        st, made = api(sa_k.port, "POST", "/api/v1/api-keys",
                       {"name": "bench", "scopes": ["self:read"], "rate_limit": high},
                       token=key_token)
        if st != 201:
            raise RuntimeError(f"creating an API key answered {st}: {made}")
        api_key = made["key"]
        bearer_lua = make_lua(tmp, "me_bearer", headers={"Authorization": f"Bearer {key_token}"})
        key_lua = make_lua(tmp, "me_key", headers={"X-API-Key": api_key})
        raw["b_key"] = {"bearer": [], "api_key": [], "limit": []}
        for rnd in range(args.rounds):
            for name, srv, path, script in (
                    ("bearer", sa_k, "/api/v1/users/me", bearer_lua),
                    ("api_key", sa_k, "/api/v1/users/me", key_lua),
                    ("limit", lim, "/", plain)):
                log(f"b'': GET {path} round {rnd + 1} with {name}")
                r = measured([srv.pid], lambda: run_wrk(srv.port, path, script, D, C, T))
                r["cpu_us_per_req"] = cpu_us_per_req(r, srv.pid)
                raw["b_key"][name].append(r)
                if name == "api_key":
                    time.sleep(2.5)  # the last flush of the round lands before the next
        st, usage = api(sa_k.port, "GET", f"/api/v1/api-keys/{made['id']}/usage",
                        token=key_token)
        raw["b_key_usage"] = usage if st == 200 else {"status": st}
        sa_k.stop()
        servers.remove(sa_k)
        raw["b_key_flushes"] = flush_lines(sa_k.out_path)
        results["logs"]["keys (b'')"] = analyze_log(sa_k.out_path)

        # ---- 4c. logins/s against the Argon2 bound
        log("c: timing one Argon2 hash (hash_timing example)")
        ht = subprocess.run([HASH_BIN, str(defaults["memory_kib"]), str(defaults["time_cost"]),
                             str(defaults["parallelism"]), "5"],
                            capture_output=True, text=True, timeout=300, env=child_env())
        hash_ms = json.loads(ht.stdout.strip().splitlines()[-1])["ms_per_hash"]
        # the same with one hash per core at once (memory bandwidth is shared), for information
        par = [spawn([HASH_BIN, str(defaults["memory_kib"]), str(defaults["time_cost"]),
                      str(defaults["parallelism"]), "5"], stdout=subprocess.PIPE, text=True)
               for _ in range(cores)]
        par_ms = []
        for hp in par:
            out, _ = hp.communicate(timeout=300)
            PROCS.remove(hp)
            par_ms.append(json.loads(out.strip().splitlines()[-1])["ms_per_hash"])
        hash_par_ms = statistics.mean(par_ms)
        login_body = json.dumps({"email": USER["email"], "password": USER["password"]})
        login_lua = make_lua(tmp, "login", method="POST", body=login_body,
                             headers={"Content-Type": "application/json"}, count=True)
        log(f"c: login for {D}s at concurrency {2 * cores} (one hash: {hash_ms} ms)")
        r = measured([sa.pid], lambda: run_wrk(sa.port, "/api/v1/auth/login", login_lua, D,
                                                2 * cores, T, timeout="30s"))
        ok = r["statuses"].get("200", 0)
        r["logins_per_s"] = ok / (r["duration_us"] / 1e6)
        r["hash_ms"] = hash_ms
        r["argon2_bound_per_s"] = cores / (hash_ms / 1000.0)
        r["hash_ms_all_cores_at_once"] = hash_par_ms
        r["argon2_bound_all_cores_per_s"] = cores / (hash_par_ms / 1000.0)
        raw["c_login"] = r
        wait_idle(sa.pid)

        # ---- 4d. /users/me p99 under a 64-connection login flood
        token = login(port_sa)
        me = make_lua(tmp, "me2", headers={"Authorization": f"Bearer {token}"})
        log(f"d: /users/me for {D}s next to a 64-connection login flood")
        flood = Background(sa.port, "/api/v1/auth/login", login_lua, D + 2, 64, T)
        time.sleep(1.0)
        r = measured([sa.pid], lambda: run_wrk(sa.port, "/api/v1/users/me", me, D, C, T))
        fr = flood.result()
        fr["logins_per_s"] = fr["statuses"].get("200", 0) / (fr["duration_us"] / 1e6)
        raw["d_flood"] = {"me": r, "flood": fr, "threads_after": proc_status_kib(sa.pid, "Threads")}
        wait_idle(sa.pid)

        sa.stop()
        servers.remove(sa)
        results["logs"]["main (a-d)"] = analyze_log(sa.out_path)

        # ---- 4e. peak RSS during a 500-connection login flood (fresh process)
        port_e = free_port()
        sa_e = start_sa("flood", tmp, data, port_e, ["--rate-limit", "off"])
        servers.append(sa_e)
        time.sleep(0.5)  # let the start-up dummy hash finish
        rss_before = proc_status_kib(sa_e.pid, "VmRSS")
        log(f"e: 500-connection login flood for {D}s")
        peak_sampled = [0, 0]
        stop_sampling = threading.Event()

        def sampler():
            while not stop_sampling.is_set():
                try:
                    peak_sampled[0] = max(peak_sampled[0], proc_status_kib(sa_e.pid, "VmRSS"))
                    peak_sampled[1] = max(peak_sampled[1], proc_status_kib(sa_e.pid, "Threads"))
                except OSError:
                    return
                stop_sampling.wait(0.05)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        r = measured([sa_e.pid], lambda: run_wrk(sa_e.port, "/api/v1/auth/login", login_lua, D,
                                                  500, T, timeout="30s"))
        drain_s = wait_idle(sa_e.pid)
        stop_sampling.set()
        th.join()
        r["rss_before_kib"] = rss_before
        r["vmhwm_kib"] = proc_status_kib(sa_e.pid, "VmHWM")
        r["rss_peak_sampled_kib"] = peak_sampled[0]
        r["rss_after_kib"] = proc_status_kib(sa_e.pid, "VmRSS")
        r["drain_after_flood_s"] = drain_s
        r["threads_after"] = proc_status_kib(sa_e.pid, "Threads")
        r["threads_peak_sampled"] = peak_sampled[1]
        r["logins_per_s"] = r["statuses"].get("200", 0) / (r["duration_us"] / 1e6)
        r["limit_server_threads"] = proc_status_kib(lim.pid, "Threads")
        raw["e_rss"] = r
        sa_e.stop()
        servers.remove(sa_e)
        results["logs"]["flood (e)"] = analyze_log(sa_e.out_path)

        # ---- 4f. start-to-ready on the existing data dir, median of 5
        raw["f_start"] = {"secure_api": [], "limit": []}
        for i in range(5):
            log(f"f: start-to-ready {i + 1}/5")
            p1 = free_port()
            raw["f_start"]["secure_api"].append(time_to_ready(
                [SA_BIN, "serve", "--listen", f"127.0.0.1:{p1}", "--data-dir", data],
                "stdout", sa_ready))
            p2 = free_port()
            raw["f_start"]["limit"].append(time_to_ready(
                [LIMIT_BIN, "--listen", f"127.0.0.1:{p2}", "--cert", cert, "--key", key],
                "stderr", limit_ready))

        # ---- 4g(i). RSS after 100,000 distinct X-Forwarded-For clients
        port_g = free_port()
        sa_g = start_sa("xff", tmp, data, port_g, ["--trusted-proxy", "127.0.0.1/32"])
        servers.append(sa_g)
        time.sleep(0.5)
        rss0 = proc_status_kib(sa_g.pid, "VmRSS")
        per_thread = 100_000 // T
        flag = os.path.join(tmp, "xff-done-")
        xff_lua = make_lua(tmp, "xff", count=True, xff=True, limit=per_thread, flag=flag)
        log("g(i): 100,000 requests from distinct X-Forwarded-For addresses")
        bound = 180
        t0 = time.monotonic()
        wp = spawn(wrk_cmd(port_g, "/api/v1/users/me", xff_lua, bound, C, T),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while time.monotonic() - t0 < bound + 5 and wp.poll() is None:
            if all(os.path.exists(f"{flag}{i}") for i in range(min(T, C))):
                wp.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
                break
            time.sleep(0.1)
        out, err = wp.communicate(timeout=bound + 60)
        PROCS.remove(wp)
        r = wrk_result(wp, out, err, "xff")
        r["seconds"] = time.monotonic() - t0
        time.sleep(0.5)
        r["rss_before_kib"] = rss0
        r["rss_after_kib"] = proc_status_kib(sa_g.pid, "VmRSS")
        r["vmhwm_kib"] = proc_status_kib(sa_g.pid, "VmHWM")
        raw["g_xff"] = r
        sa_g.stop()
        servers.remove(sa_g)
        results["logs"]["xff (g-i)"] = analyze_log(sa_g.out_path)

        # ---- 4g(ii). /health latency while 500 slowloris connections are held
        port_s = free_port()
        sa_s = start_sa("slowloris", tmp, data, port_s)
        servers.append(sa_s)
        raw["g_slowloris"] = {}
        for name, srv in (("secure_api", sa_s), ("limit", lim)):
            log(f"g(ii): /health latency on {name}, without and with 500 slowloris connections")
            base = health_latency(srv.port)
            socks, failed = open_slowloris(srv.port, 500)
            opened_at = time.monotonic()
            try:
                under = health_latency(srv.port)
                rss = proc_status_kib(srv.pid, "VmRSS")
                closed = []
                if name == "secure_api":
                    # the server's header timeout (10 s) should close them; watch up to 15 s
                    closed = watch_closed(socks, opened_at + 15.0)
            finally:
                close_all(socks)
            raw["g_slowloris"][name] = {
                "baseline": base, "under_slowloris": under, "opened": len(socks),
                "failed_to_open": failed, "rss_kib_while_held": rss,
                "closed_by_server_within_15s": len(closed),
                "close_after_s_median": statistics.median(closed) if closed else None}
        sa_s.stop()
        servers.remove(sa_s)
        results["logs"]["slowloris (g-ii)"] = analyze_log(sa_s.out_path)
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:
                log(f"stopping {s.name}: {e}")
        cleanup()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    figures = compute(results, cores, workers, defaults)
    results["figures"] = figures
    table = render(results, figures)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    print(table)
    log(f"wrote {args.out}")


# --------------------------------------------------------------------------
# figures and the table


def ratio(a, b):
    try:
        return a / b
    except (ZeroDivisionError, TypeError):
        return float("nan")


def fig(fid, label, sa, ref, r, target=None, cmp=None, unit="", ref_label=""):
    passed = None
    if target is not None and r == r:  # r is not NaN
        passed = r >= target if cmp == ">=" else r <= target
    return {"id": fid, "label": label, "secure_api": sa, "reference": ref,
            "reference_is": ref_label, "ratio": r, "unit": unit,
            "target": None if target is None else f"{cmp} {target}", "pass": passed}


def compute(res, cores, workers, defaults):
    raw = res["raw"]
    F = []
    a = raw["a_health"]
    sa_rps, li_rps = best(a["secure_api"], "rps"), best(a["limit"], "rps")
    F.append(fig("a.rps", "GET /health req/s (HTTP/1.1)", sa_rps, li_rps,
                 ratio(sa_rps, li_rps), 0.85, ">=", "req/s", "limit server"))
    sa_cpu = best(a["secure_api"], "cpu_us_per_req", min)
    li_cpu = best(a["limit"], "cpu_us_per_req", min)
    F.append(fig("a.cpu", "GET /health server CPU µs/request", sa_cpu, li_cpu,
                 ratio(sa_cpu, li_cpu), 1.3, "<=", "µs", "limit server"))
    h2 = raw["a_health_h2"]
    s2, l2 = best(h2["secure_api"], "rps"), best(h2["limit"], "rps")
    F.append(fig("a.h2.rps", "GET /health req/s (HTTP/2, h2load, 10 streams/conn)", s2, l2,
                 ratio(s2, l2), unit="req/s", ref_label="limit server"))
    s2c = best(h2["secure_api"], "cpu_us_per_req", min)
    l2c = best(h2["limit"], "cpu_us_per_req", min)
    F.append(fig("a.h2.cpu", "GET /health server CPU µs/request (HTTP/2)", s2c, l2c,
                 ratio(s2c, l2c), unit="µs", ref_label="limit server"))
    b = raw["b_me"]
    sb, lb = best(b["secure_api"], "rps"), best(b["limit"], "rps")
    F.append(fig("b.rps", "GET /api/v1/users/me (Bearer) req/s vs limit GET /", sb, lb,
                 ratio(sb, lb), 0.6, ">=", "req/s", "limit server"))
    sbc = best(b["secure_api"], "cpu_us_per_req", min)
    lbc = best(b["limit"], "cpu_us_per_req", min)
    F.append(fig("b.cpu", "GET /api/v1/users/me server CPU µs/request", sbc, lbc,
                 ratio(sbc, lbc), 2.5, "<=", "µs", "limit server"))
    p50s = min(r["latency_us"]["p50"] for r in b["secure_api"])
    p50l = min(r["latency_us"]["p50"] for r in b["limit"])
    p99s = min(r["latency_us"]["p99"] for r in b["secure_api"])
    p99l = min(r["latency_us"]["p99"] for r in b["limit"])
    F.append(fig("b.p50", f"GET /api/v1/users/me latency p50 ({res['config']['connections']} conns)",
                 p50s / 1000, p50l / 1000, ratio(p50s, p50l), unit="ms", ref_label="limit server"))
    F.append(fig("b.p99", "GET /api/v1/users/me latency p99", p99s / 1000, p99l / 1000,
                 ratio(p99s, p99l), unit="ms", ref_label="limit server"))
    b0 = raw["b_me_nocache"]
    s0, l0 = best(b0["secure_api"], "rps"), best(b0["limit"], "rps")
    F.append(fig("b0.rps", "users/me req/s with --user-cache-entries 0 (SQLite read per request)",
                 s0, l0, ratio(s0, l0), unit="req/s", ref_label="limit server"))
    s0c = best(b0["secure_api"], "cpu_us_per_req", min)
    l0c = best(b0["limit"], "cpu_us_per_req", min)
    F.append(fig("b0.cpu", "users/me server CPU µs/request with --user-cache-entries 0", s0c, l0c,
                 ratio(s0c, l0c), unit="µs", ref_label="limit server"))
    bk = raw["b_key"]
    kc = best(bk["api_key"], "cpu_us_per_req", min)
    bc = best(bk["bearer"], "cpu_us_per_req", min)
    lc = best(bk["limit"], "cpu_us_per_req", min)
    F.append(fig("b.key.cpu", "GET /api/v1/users/me server CPU µs/request: X-API-Key vs Bearer "
                 "(one server, rate limits on)", kc, bc, ratio(kc, bc), 1.15, "<=", "µs",
                 "Bearer"))
    F.append(fig("b.key.cpu.limit", "GET /api/v1/users/me with X-API-Key server CPU µs/request "
                 "vs limit GET /", kc, lc, ratio(kc, lc), 2.5, "<=", "µs", "limit server"))
    kr, br = best(bk["api_key"], "rps"), best(bk["bearer"], "rps")
    F.append(fig("b.key.rps", "GET /api/v1/users/me req/s: X-API-Key vs Bearer", kr, br,
                 ratio(kr, br), unit="req/s", ref_label="Bearer"))
    fl = raw["b_key_flushes"]
    key_run_s = sum(r["duration_us"] for r in bk["api_key"]) / 1e6
    key_requests = sum(r["requests"] for r in bk["api_key"])
    F.append(fig("b.key.flush", f"usage flushes during the X-API-Key runs: {fl['flushes']} "
                 f"writes for {key_requests:,} requests, median "
                 f"{fmt(fl['duration_us_median'])} µs, max {fmt(fl['duration_us_max'])} µs; "
                 "time spent writing vs the runs' time",
                 fl["duration_us_total"] / 1000, key_run_s * 1000,
                 ratio(fl["duration_us_total"] / 1e6, key_run_s), unit="ms",
                 ref_label="X-API-Key run time"))
    b_non2xx = sum(r["errors"]["status"] for r in b["secure_api"])
    b_non2xx += sum(r["errors"]["status"] for r in bk["api_key"])
    b_non2xx += sum(r["errors"]["status"] for r in bk["bearer"])
    b_non2xx += sum(r["errors"]["status"] for r in b0["secure_api"])
    c = raw["c_login"]
    F.append(fig("c.login", f"POST /auth/login logins/s at concurrency {2 * cores} "
                 f"vs Argon2 bound = {cores} cores / {c['hash_ms']} ms",
                 c["logins_per_s"], c["argon2_bound_per_s"],
                 ratio(c["logins_per_s"], c["argon2_bound_per_s"]), 0.85, ">=", "logins/s",
                 "Argon2 bound"))
    F.append(fig("c.login.par", f"logins/s vs Argon2 bound with {cores} hashes at once "
                 f"({c['hash_ms_all_cores_at_once']:.1f} ms each)", c["logins_per_s"],
                 c["argon2_bound_all_cores_per_s"],
                 ratio(c["logins_per_s"], c["argon2_bound_all_cores_per_s"]), unit="logins/s",
                 ref_label="parallel bound"))
    d = raw["d_flood"]
    fp99 = d["me"]["latency_us"]["p99"]
    F.append(fig("d.p99", "users/me p99 under a 64-conn login flood vs idle p99 (b)",
                 fp99 / 1000, p99s / 1000, ratio(fp99, p99s), 5, "<=", "ms", "idle p99 (b)"))
    fd = d["flood"]
    F.append(fig("d.logins", "successful logins/s inside the 64-conn flood vs Argon2 bound",
                 fd["logins_per_s"], c["argon2_bound_per_s"],
                 ratio(fd["logins_per_s"], c["argon2_bound_per_s"]), unit="logins/s",
                 ref_label="Argon2 bound"))
    F.append(fig("d.rps", "users/me req/s under the flood vs without (b)",
                 d["me"]["rps"], sb, ratio(d["me"]["rps"], sb), unit="req/s",
                 ref_label="without flood (b)"))
    e = raw["e_rss"]
    target_mib = workers * defaults["memory_kib"] / 1024 + 64
    hwm = e["vmhwm_kib"] / 1024
    F.append(fig("e.rss", f"peak RSS (VmHWM) during a 500-conn login flood vs "
                 f"{workers} workers × {defaults['memory_kib'] // 1024} MiB + 64 MiB",
                 hwm, target_mib, ratio(hwm, target_mib), 1.0, "<=", "MiB", "target"))
    total_e = sum(e["statuses"].values())
    n503 = e["statuses"].get("503", 0)
    F.append(fig("e.503", "503 responses during the 500-conn flood (of all responses)",
                 n503, total_e, ratio(n503, total_e), unit="responses", ref_label="all responses"))
    F.append(fig("e.logins", "successful logins/s inside the 500-conn flood vs Argon2 bound",
                 e["logins_per_s"], c["argon2_bound_per_s"],
                 ratio(e["logins_per_s"], c["argon2_bound_per_s"]), unit="logins/s",
                 ref_label="Argon2 bound"))
    e_cores = e["server_cpu_s"][next(iter(e["server_cpu_s"]))] / (e["duration_us"] / 1e6)
    F.append(fig("e.cpu", "secure-api CPU during the 500-conn flood (the rest: wrk) vs nproc",
                 e_cores, cores, ratio(e_cores, cores), unit="cores", ref_label="nproc"))
    F.append(fig("e.threads", "OS threads, most seen during the 500-conn flood, vs limit server",
                 e["threads_peak_sampled"], e["limit_server_threads"],
                 ratio(e["threads_peak_sampled"], e["limit_server_threads"]), unit="threads",
                 ref_label="limit server"))
    f = raw["f_start"]
    ms, ml = statistics.median(f["secure_api"]) * 1000, statistics.median(f["limit"]) * 1000
    F.append(fig("f.start", "start-to-ready, existing data dir (median of 5)", ms, ml,
                 ratio(ms, ml), unit="ms", ref_label="limit server"))
    g = raw["g_xff"]
    ra, rb = g["rss_after_kib"] / 1024, g["rss_before_kib"] / 1024
    F.append(fig("g.xff", f"RSS after {g['sent']:,} requests from distinct X-Forwarded-For "
                 f"(rate limits on) vs before", ra, rb, ratio(ra, rb), unit="MiB",
                 ref_label="RSS before"))
    gs = raw["g_slowloris"]
    for q in ("p50", "p99"):
        s_u = gs["secure_api"]["under_slowloris"][f"{q}_us"]
        l_u = gs["limit"]["under_slowloris"][f"{q}_us"]
        F.append(fig(f"g.slow.{q}", f"/health {q} on one keep-alive conn with 500 slowloris "
                     f"conns held", s_u / 1000, l_u / 1000, ratio(s_u, l_u), unit="ms",
                     ref_label="limit server"))
    s_u, s_b = (gs["secure_api"]["under_slowloris"]["p99_us"],
                gs["secure_api"]["baseline"]["p99_us"])
    F.append(fig("g.slow.self", "secure-api /health p99 with slowloris vs without",
                 s_u / 1000, s_b / 1000, ratio(s_u, s_b), unit="ms", ref_label="without"))
    res["notes"] = {
        "b_users_me_non_2xx": b_non2xx,
        "b_key_usage_total": raw.get("b_key_usage", {}).get("total"),
        "c_statuses": c["statuses"],
        "d_flood_statuses": fd["statuses"],
        "d_flood_wrk_errors": fd["errors"],
        "e_wrk_errors": e["errors"],
        "g_xff_statuses": g["statuses"],
        "g_slowloris_closed_by_server_within_15s": gs["secure_api"]["closed_by_server_within_15s"],
        "g_slowloris_close_after_s_median": gs["secure_api"]["close_after_s_median"],
    }
    return F


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v != v:
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"


def render(res, F):
    m = res["machine"]
    cfg = res["config"]
    head = (f"measure — {m['date']} · nproc {m['nproc']} · {m['cpu_model']} · Linux {m['kernel']}"
            f" · {cfg['duration_s']} s runs, {cfg['connections']} conns, {cfg['wrk_threads']} wrk"
            f" threads, best of {cfg['rounds']} A/B rounds")
    rows = [f"| {head} | unit | secure-api | reference | ratio | target | result |",
            "|---|---|---:|---:|---:|---|---|"]
    for f in F:
        ref = f"{fmt(f['reference'])} ({f['reference_is']})" if f["reference_is"] else fmt(f["reference"])
        res_s = "–" if f["pass"] is None else ("PASS" if f["pass"] else "MISS")
        rows.append(f"| {f['label']} | {f['unit']} | {fmt(f['secure_api'])} | {ref} | "
                    f"{fmt(f['ratio'])}× | {f['target'] or 'info'} | {res_s} |")
    n = res["notes"]
    logs = res["logs"]
    five = {k: sum(v for s, v in l["status"].items() if s.startswith("5")) for k, l in logs.items()}
    errs = {k: l["error_lines"] for k, l in logs.items()}
    warns = {k: l["warn_lines"] for k, l in logs.items()}
    panics = sum(l["panic_lines"] for l in logs.values())
    rows.append(f"| statuses: c login {fmt_st(n['c_statuses'])}; d flood {fmt_st(n['d_flood_statuses'])};"
                f" g(i) {fmt_st(n['g_xff_statuses'])}; b users/me non-2xx {n['b_users_me_non_2xx']}"
                " | | | | | info | – |")
    rows.append(f"| slowloris: closed by secure-api within 15 s "
                f"{n['g_slowloris_closed_by_server_within_15s']}/500, median after "
                f"{fmt(n['g_slowloris_close_after_s_median'])} s | | | | | info | – |")
    rows.append("| server log 5xx per phase: " + ", ".join(f"{k} {v}" for k, v in five.items())
                + "; ERROR lines: " + ", ".join(f"{k} {v}" for k, v in errs.items())
                + "; WARN lines: " + ", ".join(f"{k} {v}" for k, v in warns.items())
                + f"; lines mentioning panic: {panics} | | | | | info | – |")
    return "\n".join(rows)


def fmt_st(d):
    return "{" + ", ".join(f"{k}: {v:,}" for k, v in sorted(d.items())) + "}" if d else "{}"


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        main()
    except KeyboardInterrupt:
        cleanup()
        sys.exit(130)
    finally:
        cleanup()
