#!/usr/bin/env python3
"""Benchmark `stevedore push` against `skopeo copy` to a local registry.

Builds two OCI layouts (gzip) of the closure: image A, and image B whose top
layer (the app) differs by one changed file. Then, in each run, against a
fresh `docker-registry` on 127.0.0.1 for each tool:

  first push:   A into an empty registry
  second push:  B into the same repository, after A

once with `stevedore push` and once with `skopeo copy oci:... docker://...`,
the tools alternating which goes first (after one warm-up run of each), and
prints medians as a Markdown table, with the time stevedore's second push
spent uploading the changed layer (from its per-layer line) and the rest.

Usage:
  bench/push.py --closure STORE_PATH [--runs 3] [--layers 100]

STORE_PATH is the top of the closure, e.g. the `app` of
../shared/bench/fixture.nix (see bench/run.sh --push, which builds it).
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def closure(path):
    out = subprocess.run(["nix-store", "-qR", path], check=True,
                         capture_output=True, text=True).stdout.split()
    return sorted(out)


def sizes(paths):
    out = subprocess.run(["nix-store", "-q", "--size"] + paths, check=True,
                         capture_output=True, text=True).stdout.split()
    return dict(zip(paths, map(int, out)))


def spec(paths, top, app, layers):
    """The largest paths one per layer, the rest in one, and on top `app`
    in place of the closure's top path."""
    rest = [p for p in paths if p != top]
    size = sizes(rest)
    ordered = sorted(rest, key=lambda p: (-size[p], p))
    plan = [[p] for p in ordered[:layers - 2]] + [ordered[layers - 2:]]
    plan = [l for l in plan if l] + [[app]]
    return {"version": 1, "name": "bench", "tag": "latest",
            "created": "2024-01-01T00:00:00Z",
            "layers": [{"paths": l} for l in plan]}


def changed_app(app, work):
    """A copy of the app store path with one file changed, in the store."""
    copy = os.path.join(work, os.path.basename(app).split("-", 1)[1])
    shutil.copytree(app, copy, symlinks=True)
    for root, dirs, files in os.walk(copy):
        os.chmod(root, 0o755)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    # One file changed: the app's script (the first regular file).
    target = next(os.path.join(root, f) for root, dirs, files in sorted(os.walk(copy))
                  for f in sorted(files) if not os.path.islink(os.path.join(root, f)))
    with open(target, "a") as f:
        f.write("# changed for the push benchmark\n")
    out = subprocess.run(["nix-store", "--add", copy], check=True,
                         capture_output=True, text=True).stdout.strip()
    shutil.rmtree(copy)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A docker-registry with its own storage, removed on exit."""

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(prefix="registry-", dir=work)
        self.port = free_port()
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/storage\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", config],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2)
                return
            except Exception:
                time.sleep(0.05)
        raise SystemExit("docker-registry did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir)


def timed(cmd):
    """Wall seconds, peak RSS (KiB) and stderr of a command, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as rep:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", rep.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
        wall, rss = rep.read().split()[-2:]
    return float(wall), int(rss), p.stderr


UPLOADED = re.compile(r"^layer \d+/\d+ \S+ ([\d.]+) (\w?B) uploaded in ([\d.]+) s", re.M)


def stevedore_runs(sd, a, b, work):
    with Registry(work) as r:
        host = f"127.0.0.1:{r.port}"
        first = timed([sd, "push", a, f"docker://{host}/bench/app:a", "--tls-verify=false"])
        second = timed([sd, "push", b, f"docker://{host}/bench/app:b", "--tls-verify=false"])
    uploads = UPLOADED.findall(second[2])
    if len(uploads) != 1:
        raise SystemExit(f"the second push uploaded {len(uploads)} layers:\n{second[2]}")
    size, unit, secs = uploads[0]
    return first, second, float(secs), f"{size} {unit}"


def skopeo_runs(a, b, work):
    with Registry(work) as r:
        host = f"127.0.0.1:{r.port}"
        cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
        first = timed(cmd + [f"oci:{a}:latest", f"docker://{host}/bench/app:a"])
        second = timed(cmd + [f"oci:{b}:latest", f"docker://{host}/bench/app:b"])
    return first, second


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closure", required=True)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()

    sd = os.path.abspath(args.stevedore)
    work = args.work or tempfile.mkdtemp(prefix="stevedore-bench-push-")
    os.makedirs(work, exist_ok=True)
    paths = closure(args.closure)
    app2 = changed_app(args.closure, work)
    layouts = []
    for name, app in [("a", args.closure), ("b", app2)]:
        s = spec(paths, args.closure, app, args.layers)
        spec_path = os.path.join(work, f"spec-{name}.json")
        with open(spec_path, "w") as f:
            json.dump(s, f)
        out = os.path.join(work, f"layout-{name}")
        if os.path.exists(out):
            shutil.rmtree(out)
        subprocess.run([sd, "build", spec_path, "--format", "oci-dir", "--compress", "gzip",
                        "--out", out], check=True)
        layouts.append(out)
    a, b = layouts
    blobs = os.path.join(a, "blobs", "sha256")
    total = sum(os.path.getsize(os.path.join(blobs, f)) for f in os.listdir(blobs))
    print(f"closure: {len(paths)} paths; {len(s['layers'])} layers, gzip; "
          f"{total / 1e6:.0f} MB of blobs; {args.runs} runs, medians", file=sys.stderr)

    stevedore_runs(sd, a, b, work)
    skopeo_runs(a, b, work)
    ours, theirs = [], []
    for i in range(args.runs):
        if i % 2 == 0:
            ours.append(stevedore_runs(sd, a, b, work))
            theirs.append(skopeo_runs(a, b, work))
        else:
            theirs.append(skopeo_runs(a, b, work))
            ours.append(stevedore_runs(sd, a, b, work))

    med = statistics.median
    s1 = med(o[0][0] for o in ours)
    s2 = med(o[1][0] for o in ours)
    k1 = med(t[0][0] for t in theirs)
    k2 = med(t[1][0] for t in theirs)
    up = med(o[2] for o in ours)
    rss1 = max(o[0][1] for o in ours) / 1024
    rss2 = max(o[1][1] for o in ours) / 1024
    krss = max(max(t[0][1], t[1][1]) for t in theirs) / 1024
    print("| push | `stevedore push` | peak RSS | `skopeo copy` | peak RSS | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| first (empty registry) | {s1:.2f} s | {rss1:.0f} MiB | {k1:.2f} s "
          f"| {krss:.0f} MiB | {s1 / k1:.2f}x |")
    print(f"| second (one file changed in the app layer) | {s2:.2f} s | {rss2:.0f} MiB "
          f"| {k2:.2f} s | {krss:.0f} MiB | {s2 / k2:.2f}x |")
    print(f"\nSecond push: the changed layer ({ours[0][3]}) uploaded in {up:.2f} s; "
          f"the rest of the push took {s2 - up:.2f} s.")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
