"""The per-second table of tools/nats-e2e: the journals' source rate, fill,
level, shed and pushed-back counters, and the rate the R3 streams take records.

Args: BACKWATER WORK STARTED MONITOR_URL... (journals are WORK/a, b, c).
Appends each second's positive stream rate to WORK/stream.rates.
With --count MONITOR_URL...: prints the messages in the streams and exits.
"""
import json
import subprocess
import sys
import time
import urllib.request

def info(journal):
    out = subprocess.run([backwater, "info", f"{work}/{journal}", "--json"], capture_output=True).stdout
    return json.loads(out)


def in_stream(monitors):
    """The messages in stream EDGE or streams EDGE_*, each counted by the node that reports the
    most (a follower may lag a moment); None when all are down."""
    counts = {}
    for monitor in monitors:
        try:
            d = json.load(urllib.request.urlopen(monitor + "/jsz?streams=true", timeout=0.3))
        except Exception:
            continue
        for s in (s for a in d.get("account_details") or [] for s in a.get("stream_detail") or []):
            if s["name"] == "EDGE" or s["name"].startswith("EDGE_"):
                counts[s["name"]] = max(counts.get(s["name"], 0), s["state"]["messages"])
    return sum(counts.values()) if counts else None


if sys.argv[1] == "--count":
    print(in_stream(sys.argv[2:]) or 0)
    sys.exit(0)
backwater, work, started, monitors = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]


print(f"{'t':>5} {'source/s':>9} {'stream/s':>9}  {'fill a/b/c':<12} {'level':<15} {'shed':>7} {'pushed-back':>12}",
      flush=True)
last = None
tick = time.time()
while True:
    tick += 1
    time.sleep(max(0, tick - time.time()))
    now, journals, stored = time.time(), [info(j) for j in "abc"], in_stream(monitors)
    appended = sum(d["appended"] for d in journals)
    levels = [d["level"] for d in journals]
    worst = next((level for level in ("back-pressured", "shedding") if level in levels), "normal")
    fills = "/".join(str(round(d["fill"] * 100)) for d in journals) + "%"
    source = stream = "-"
    if last:
        elapsed = now - last[0]
        source = round((appended - last[1]) / elapsed)
        if stored is not None and last[2] is not None:
            stream = round((stored - last[2]) / elapsed)
    shed = sum(d["dropped_low"] for d in journals)
    pushed = sum(d["back_pressured"] for d in journals)
    print(f"{round(now - started):>4}s {source:>9} {stream:>9}  {fills:<12} {worst:<15} {shed:>7} {pushed:>12}",
          flush=True)
    if isinstance(stream, int) and stream > 0:
        with open(f"{work}/stream.rates", "a") as rates:
            print(stream, file=rates)
    last = (now, appended, stored if stored is not None else (last[2] if last else None))
