#!/usr/bin/env python3
"""What a rebuild and push after a one-file change to the app costs.

bench/rebuild.nix makes four images of the benchmark closure whose app has
one changed file: `layered` (buildLayeredImage: every layer compressed in
the image derivation), `lists` (buildLayeredImage with explicit `layering`
lists: the unchanged closure in one, the app in another, each a layer
derivation of its own), `stream` (streamLayeredImage: a launcher, layers
made when pushed, with the helper's layer cache) and `explicit`
(nix2container.buildImage with the unchanged closure in a buildLayer of
its own). Each is built once (the full build, timed) and pushed to a fresh
docker-registry on 127.0.0.1; then, `--runs` times, the app is changed
(a new `change` string), the image rebuilt with nix-build and pushed
again, and the two steps are timed. `skopeo copy docker-archive:`
pushes the `layered` result, as a dockerTools user without stevedore
would.

Usage (bench/run.sh --rebuild builds the fixture and the helper first):
  bench/rebuild.py --closure STORE_PATH [--runs 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layers import nix_build_cmd  # noqa: E402
from push import Registry  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def wall(cmd):
    """Runs `cmd`; returns its wall time and its standard output."""
    start = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return took, p.stdout.strip()


def build(helper, app, deps, attr, change):
    return wall(nix_build_cmd(os.path.join(HERE, "rebuild.nix"), attr, helper,
                              app=app, deps=deps, change=change))


def push(sd, tool, image, host, tag):
    dest = f"docker://{host}/bench/app:{tag}"
    if tool == "skopeo":
        return wall(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                     f"docker-archive:{image}", dest])[0]
    return wall([sd, "push", image, dest, "--tls-verify=false"])[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closure", required=True)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sd = os.path.abspath(args.stevedore)
    work = os.environ.get("TMPDIR", "/tmp")
    closure = subprocess.run(["nix-store", "-qR", args.closure], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.split()
    deps = os.path.join(work, f"rebuild-deps-{uuid.uuid4().hex[:8]}.json")
    with open(deps, "w") as f:
        json.dump(sorted(p for p in closure if p != args.closure), f)
    rows = [("buildLayeredImage", "layered", "stevedore push"),
            ("buildLayeredImage", "layered", "skopeo copy"),
            ("buildLayeredImage, explicit lists", "lists", "stevedore push"),
            ("streamLayeredImage", "stream", "stevedore push"),
            ("nix2container.buildImage, buildLayer", "explicit", "stevedore push")]
    print(f"one file of the app changed; {args.runs} runs, medians")
    print("| image | push | full build | full push | rebuild | push | rebuild + push |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, attr, tool in rows:
        nonce = uuid.uuid4().hex[:8]
        # Each row starts with an empty layer cache, as a fresh machine.
        cache = tempfile.mkdtemp(prefix="rebuild-cache-", dir=work)
        os.environ["XDG_CACHE_HOME"] = cache
        with Registry(work) as r:
            host = f"127.0.0.1:{r.port}"
            full_build, image = build(sd, args.closure, deps, attr, f"first {nonce}")
            full_push = push(sd, tool.split()[0], image, host, "first")
            builds, pushes = [], []
            for i in range(args.runs):
                took, image = build(sd, args.closure, deps, attr, f"run {i} {nonce}")
                builds.append(took)
                pushes.append(push(sd, tool.split()[0], image, host, f"run{i}"))
        b, p = statistics.median(builds), statistics.median(pushes)
        both = statistics.median(x + y for x, y in zip(builds, pushes))
        print(f"| {name} | `{tool}` | {full_build:.2f} s | {full_push:.2f} s | {b:.2f} s "
              f"| {p:.2f} s | {both:.2f} s |", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    os.remove(deps)


if __name__ == "__main__":
    main()
