#!/usr/bin/env python3
"""`KILN_BIN` for ../shared/bench/peers/run.sh. Wrapper for the peers harness's `"$KILN_BIN" bench --shapes F ... ` call: runs the real kiln bench
over the shape file, and when a layer fails (kiln bench stops at the first error), logs it and goes on
with the layers after it (--only). Real binary: $KILN_REAL."""
import json, os, subprocess, sys
real = os.environ.get("KILN_REAL") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "release", "kiln")
args = sys.argv[1:]
i = args.index("--shapes")
names = [s["name"] for s in json.load(open(args[i + 1]))["shapes"]]
json_mode = "--json" in args
todo = names
while todo:
    p = subprocess.Popen([real] + args + ["--only", ",".join(todo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = []
    for line in p.stdout:
        sys.stdout.write(line); sys.stdout.flush()
        f = line.split()
        if json_mode and line.startswith("{"):
            done.append(json.loads(line)["name"])
        elif not json_mode and f and f[0] in todo:
            done.append(f[0])
    err = p.stderr.read()
    rc = p.wait()
    if rc == 0:
        break
    rest = [n for n in todo if n not in done]
    bad = rest[0]
    sys.stderr.write(f"KILN-FAILED\t{bad}\t{err.strip()}\n"); sys.stderr.flush()
    todo = rest[1:]
