"""bench/noop: the time of a no-op rerun of a generated 1,000-stage recipe,
against real ninja's no-op time on the build.ninja that `qpipe ninja`
writes for the same recipe, measured in the same run, as a ratio.
Goals (issue 4): <= 2x ninja and <= 100 ms.

usage: python3 bench/noop.py QPIPE [STAGES] [REPS]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time


def recipe(n):
    lines = ["name: noop-bench", "stages:"]
    for i in range(n):
        needs = "" if i % 10 == 0 else ", needs: [s%d]" % (i - 1)
        lines.append("  s%d: { uses: run, with: { cmd: \"true %d\" }%s }" % (i, i, needs))
    return "\n".join(lines) + "\n"


def best(cmd, reps, cwd):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t.append(time.perf_counter() - t0)
    return min(t), sorted(t)[len(t) // 2]


def main():
    qpipe = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    if not shutil.which("ninja"):
        sys.exit("bench/noop needs ninja (Debian's ninja-build)")
    with tempfile.TemporaryDirectory(prefix="qpipe-noop-") as d:
        r = os.path.join(d, "r.yaml")
        with open(r, "w") as f:
            f.write(recipe(n))
        cache = os.path.join(d, "cache")
        t0 = time.perf_counter()
        subprocess.run([qpipe, "run", r, "--cache-dir", cache, "-q", "-j", str(os.cpu_count())],
                       check=True)
        first = time.perf_counter() - t0
        subprocess.run([qpipe, "ninja", r, "--cache-dir", cache, "-q", "-o",
                        os.path.join(d, "build.ninja")], check=True)
        subprocess.run(["ninja", "-C", d], check=True, stdout=subprocess.DEVNULL)
        q_min, q_med = best([qpipe, "run", r, "--cache-dir", cache, "-q"], reps, d)
        n_min, n_med = best(["ninja", "-C", d], reps, d)
        print("bench/noop: %d-stage recipe (run stages, chains of 10); first run %.2f s" % (n, first))
        print("| what | best ms | median ms |")
        print("|---|---:|---:|")
        print("| qpipe run (no-op) | %.1f | %.1f |" % (q_min * 1e3, q_med * 1e3))
        print("| ninja (no-op, same DAG) | %.1f | %.1f |" % (n_min * 1e3, n_med * 1e3))
        print("ratio qpipe/ninja: %.2fx (goal <= 2x); qpipe no-op %.0f ms (goal <= 100 ms)"
              % (q_min / n_min, q_min * 1e3))


if __name__ == "__main__":
    main()
