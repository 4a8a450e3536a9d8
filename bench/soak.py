#!/usr/bin/env python3
"""Soak benchmark: the agent daemon with N guests for a while, sampling its resident memory and
CPU over time (issue 5: "under 20 MB resident, idle CPU near zero").

Starts felhom-pve-sim (--guests N), felhom-hub-sim and `felhom-agent run` from a target
directory (release by default), publishes a desired state adopting every guest, and samples
/proc/<agent pid>/status (VmRSS) and /proc/<agent pid>/stat (utime+stime) every --every
seconds. Prints one line per sample and a summary (JSON with --json). Stops everything at the
end or on Ctrl-C. Loopback only.

    cargo build --release -p felhom-agent && cargo build -p pve-sim -p hub-sim
    python3 bench/soak.py --target target/release --tools-target target/debug --guests 100 --seconds 600
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def ready_line(proc):
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("%s exited before printing its ready line" % proc.args[0])
    return json.loads(line)


def admin(url, method, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return rss_kb, ticks / CLK_TCK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="target/release", help="where felhom-agent is")
    ap.add_argument("--tools-target", default=None,
                    help="where felhom-pve-sim and felhom-hub-sim are (default: --target)")
    ap.add_argument("--guests", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--every", type=int, default=30)
    ap.add_argument("--poll", type=int, default=30, help="hub poll interval the hub directs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tools = args.tools_target or args.target
    work = tempfile.mkdtemp(prefix="felhom-soak-")
    procs = []

    def stop(*_):
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=25)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGINT, lambda *a: (stop(), sys.exit(130)))
    try:
        sim = subprocess.Popen([os.path.join(tools, "felhom-pve-sim"), "--state",
                                os.path.join(work, "sim"), "--guests", str(args.guests),
                                "--task-ms", "200", "--auth-fail-delay-ms", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(sim)
        s = ready_line(sim)
        hubp = subprocess.Popen([os.path.join(tools, "felhom-hub-sim"), "--state",
                                 os.path.join(work, "hub"), "--deadline-s", "600"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(hubp)
        h = ready_line(hubp)
        host = "soak-host"
        token = os.path.join(work, "token")
        key = os.path.join(work, "hub-key")
        for path, value in ((token, s["token"]), (key, h["api_key"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, value.encode())
            os.close(fd)
        config = {
            "host_id": host, "state_dir": os.path.join(work, "state"),
            "proxmox": {"url": s["url"], "node": s["node"], "token": {"file": token},
                        "fingerprint": s["fingerprint"]},
            "hub": {"url": h["url"], "api_key": {"file": key}, "poll_interval_s": args.poll},
            "log": {"level": "warn"},
        }
        cfg = os.path.join(work, "config.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        admin(h["admin_url"], "PUT", "/admin/hosts/%s/config" % host,
              {"poll_interval_s": args.poll, "jitter_s": 0})
        guests = [{"vmid": 100 + i, "state": "running" if i % 2 == 0 else "stopped",
                   "config": {"description": "soak guest %d" % i}} for i in range(args.guests)]
        admin(h["admin_url"], "PUT", "/admin/hosts/%s/desired" % host,
              {"v": 1, "generation": 1, "guests": guests})
        agent = subprocess.Popen([os.path.join(args.target, "felhom-agent"), "run", "--config", cfg],
                                 stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(work, "agent.log"), "w"))
        procs.append(agent)

        start = time.time()
        samples = []
        prev = None
        while time.time() - start < args.seconds:
            time.sleep(args.every)
            if agent.poll() is not None:
                raise SystemExit("agent exited with %s; log in %s" % (agent.returncode, work))
            rss_kb, cpu_s = sample(agent.pid)
            t = time.time() - start
            cpu_pct = None if prev is None else 100.0 * (cpu_s - prev[1]) / (t - prev[0])
            prev = (t, cpu_s)
            samples.append({"t_s": round(t), "rss_mb": round(rss_kb / 1024, 1),
                            "cpu_s": round(cpu_s, 2),
                            "cpu_pct": None if cpu_pct is None else round(cpu_pct, 2)})
            if not args.json:
                print("t=%4ds rss=%5.1f MB cpu_total=%6.2fs cpu=%s%%" % (
                    t, rss_kb / 1024, cpu_s, "-" if cpu_pct is None else "%.2f" % cpu_pct),
                    flush=True)
        steady = [x["cpu_pct"] for x in samples[len(samples) // 2:] if x["cpu_pct"] is not None]
        summary = {
            "guests": args.guests, "seconds": args.seconds, "poll_interval_s": args.poll,
            "rss_mb_max": max(x["rss_mb"] for x in samples),
            "rss_mb_last": samples[-1]["rss_mb"],
            "cpu_pct_second_half_mean": round(sum(steady) / len(steady), 3) if steady else None,
            "cpu_s_total": samples[-1]["cpu_s"],
            "samples": samples,
        }
        print(json.dumps(summary) if args.json else
              "summary: max RSS %.1f MB, last %.1f MB, mean CPU %.3f%% over the second half, "
              "%.2f s CPU in %d s" % (summary["rss_mb_max"], summary["rss_mb_last"],
                                      summary["cpu_pct_second_half_mean"] or 0.0,
                                      summary["cpu_s_total"], args.seconds))
    finally:
        stop()


if __name__ == "__main__":
    main()
