#!/usr/bin/env python3
"""A mock of the Hugging Face Hub on 127.0.0.1, for qpipe's download tests.

    python3 mock_hub.py SHARED_DIR        prints "PORT <n>", then serves

It answers the requests huggingface_hub and qpipe make:

    GET  /api/{models,datasets}/<repo>/revision/<rev>[?blobs=true]
         repo info: "sha" and "siblings" (with blobs: size, blobId, lfs)
    GET  /api/{models,datasets}/<repo>/tree/<rev>[?recursive=...]
         the file list list_repo_tree reads (type, path, size, oid, lfs)
    HEAD/GET /[datasets/]<repo>/resolve/<rev>/<path>
         a plain file: 200 with ETag (git blob sha1) and X-Repo-Commit;
         an LFS file (*.safetensors, *.bin, *.model): 302 to the blob URL on
         another origin (http://localhost:<port>/_blobs/...) with ETag,
         X-Linked-Etag (its sha256), X-Linked-Size and X-Repo-Commit
    HEAD/GET /_blobs/<repo>/<etag>       LFS content ("the CDN")

Bodies honour Range (206, or 416 past the end). Repos, served from
SHARED_DIR/data/models:

    karpathy/stories260K, qpipe/llama-docs-27m    plain
    qpipe/moving                                  stories260K, for /_control/bump
    datasets: qpipe/tiny-text                     (from models/stories260K-llama2c)
    faults/<fault>   stories260K with a fault on file bodies:
        truncated     first request per file: full Content-Length, half the
                      body, connection closed
        reset         first request per file: half the body, then a TCP reset
        flaky         first two requests per file: HTTP 500 (the API's first
                      request too)
        corrupt       every body has one byte changed
        corrupt-once  the first body per file has one byte changed
        gated         401 without "Authorization: Bearer hf_mock_token"

Control (tests): GET /_stats (counters, JSON), POST /_control/reset (zero
counters and fault state), POST /_control/bump?repo=<repo> (a new commit
on main that adds/changes README.md; returns its sha).
"""
import hashlib
import http.server
import json
import os
import re
import socket
import struct
import sys
import threading
import urllib.parse

TOKEN = "hf_mock_token"
FAULTS = ["truncated", "reset", "flaky", "corrupt", "corrupt-once", "gated"]


def is_lfs(path):
    return path.endswith((".safetensors", ".bin", ".model"))


def etag_of(path, data):
    if is_lfs(path):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, rid, rtype, src, fault=None):
        self.id, self.type, self.fault = rid, rtype, fault
        files = {}
        for name in sorted(os.listdir(src)):
            p = os.path.join(src, name)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    files[name] = f.read()
        self.commits = {}   # sha -> {path: (etag, data)}
        self.refs = {}
        sha = self.commit(files, "main")
        self.refs["v1.0"] = sha

    def commit(self, files, branch):
        tree = {p: (etag_of(p, d), d) for p, d in files.items()}
        h = hashlib.sha1(("%s %d" % (self.id, len(self.commits))).encode())
        for p in sorted(tree):
            h.update(("%s %s\n" % (p, tree[p][0])).encode())
        sha = h.hexdigest()
        self.commits[sha] = tree
        self.refs[branch] = sha
        return sha

    def resolve(self, rev):
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None

    def blob(self, etag):
        for tree in self.commits.values():
            for path, (e, d) in tree.items():
                if e == etag:
                    return path, d
        return None, None


class Hub:
    def __init__(self, shared):
        models = os.path.join(shared, "data", "models")
        self.repos = {}
        self.lock = threading.RLock()
        for rid, src in [("karpathy/stories260K", "stories260K"),
                         ("qpipe/moving", "stories260K"),
                         ("qpipe/llama-docs-27m", "llama-docs-27m")]:
            self.repos[("model", rid)] = Repo(rid, "model", os.path.join(models, src))
        self.repos[("dataset", "qpipe/tiny-text")] = Repo(
            "qpipe/tiny-text", "dataset", os.path.join(models, "stories260K-llama2c"))
        for f in FAULTS:
            rid = "faults/" + f
            self.repos[("model", rid)] = Repo(rid, "model", os.path.join(models, "stories260K"), f)
        self.reset()

    def reset(self):
        with self.lock:
            self.stats = {"api": 0, "tree": 0, "head": 0, "body": {}, "ranges": [],
                          "auth": [], "status": {}}
            self.seen = {}   # (repo, path) -> body requests so far

    def count(self, key, path):
        with self.lock:
            self.stats["body"][path] = self.stats["body"].get(path, 0) + 1
            self.seen[key] = self.seen.get(key, 0) + 1
            return self.seen[key]


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "mock-hub/1"
    hub = None

    def log_message(self, fmt, *args):
        pass

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass   # the connection was cut on purpose

    # -- replies --
    def reply(self, code, body=b"", headers=None, ctype="application/json"):
        with self.hub.lock:
            self.hub.stats["status"][str(code)] = self.hub.stats["status"].get(str(code), 0) + 1
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, msg, kind=None):
        h = {"X-Error-Message": msg}
        if kind:
            h["X-Error-Code"] = kind
        self.reply(code, json.dumps({"error": msg}).encode(), h)

    def json(self, obj):
        self.reply(200, json.dumps(obj).encode())

    # -- routing --
    def do_HEAD(self):
        self.route()

    def do_GET(self):
        self.route()

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/_control/reset":
            self.hub.reset()
            return self.json({"ok": True})
        if u.path == "/_control/bump":
            repo = self.hub.repos.get(("model", q.get("repo", [""])[0]))
            if not repo:
                return self.error(404, "no such repo")
            old = repo.commits[repo.refs["main"]]
            files = {p: d for p, (e, d) in old.items()}
            files["README.md"] = b"revision %d\n" % len(repo.commits)
            return self.json({"sha": repo.commit(files, "main")})
        self.error(404, "not found")

    def authorized(self, repo):
        if repo.fault != "gated":
            return True
        ok = self.headers.get("Authorization") == "Bearer " + TOKEN
        with self.hub.lock:
            self.hub.stats["auth"].append(self.headers.get("Authorization") or "")
        if not ok:
            self.error(401, "Access to model %s is restricted. You must have access to it and "
                       "be authenticated to access it. Please log in." % repo.id, "GatedRepo")
        return ok

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        path = u.path
        if path == "/_stats":
            with self.hub.lock:
                return self.json(self.hub.stats)
        m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?$", path)
        if m:
            return self.api(m.group(1)[:-1], m.group(2), m.group(3),
                            urllib.parse.unquote(m.group(4)), "blobs=true" in u.query)
        m = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self.resolve("dataset" if m.group(1) else "model", m.group(2),
                                urllib.parse.unquote(m.group(3)), urllib.parse.unquote(m.group(4)))
        m = re.match(r"^/_blobs/(model|dataset)/([^/]+/[^/]+)/([0-9a-f]{64})$", path)
        if m:
            repo = self.hub.repos.get((m.group(1), m.group(2)))
            name, data = repo.blob(m.group(3)) if repo else (None, None)
            if data is None:
                return self.error(404, "no such blob")
            return self.body(repo, name, data, {"ETag": '"%s"' % m.group(3)})
        self.error(404, "not found")

    def api(self, rtype, rid, what, rev, blobs):
        repo = self.hub.repos.get((rtype, rid))
        if not repo:
            return self.error(404, "Repository not found", "RepoNotFound")
        if not self.authorized(repo):
            return
        with self.hub.lock:
            self.hub.stats["tree" if what == "tree" else "api"] += 1
            n = self.hub.stats["api"]
        if repo.fault == "flaky" and what == "revision" and n == 1:
            return self.error(500, "internal error (injected)")
        sha = repo.resolve(rev)
        if not sha:
            return self.error(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        tree = repo.commits[sha]
        if what == "tree":
            out = []
            for p in sorted(tree):
                e, d = tree[p]
                ent = {"type": "file", "path": p, "size": len(d),
                       "oid": hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest()}
                if is_lfs(p):
                    ent["lfs"] = {"oid": e, "size": len(d), "pointerSize": 134}
                out.append(ent)
            return self.json(out)
        sib = []
        for p in sorted(tree):
            e, d = tree[p]
            s = {"rfilename": p}
            if blobs:
                s["size"] = len(d)
                s["blobId"] = hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest()
                if is_lfs(p):
                    s["lfs"] = {"sha256": e, "size": len(d), "pointerSize": 134}
            sib.append(s)
        self.json({"_id": rid, "id": rid, "sha": sha, "siblings": sib, "private": False,
                   "gated": "manual" if repo.fault == "gated" else False})

    def resolve(self, rtype, rid, rev, path):
        repo = self.hub.repos.get((rtype, rid))
        if not repo:
            return self.error(404, "Repository not found", "RepoNotFound")
        if not self.authorized(repo):
            return
        sha = repo.resolve(rev)
        if not sha:
            return self.error(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        if path not in repo.commits[sha]:
            return self.error(404, "Entry not found", "EntryNotFound")
        etag, data = repo.commits[sha][path]
        if self.command == "HEAD":
            with self.hub.lock:
                self.hub.stats["head"] += 1
        h = {"X-Repo-Commit": sha}
        if is_lfs(path):
            port = self.server.server_address[1]
            h.update({"ETag": '"%s"' % etag, "X-Linked-Etag": '"%s"' % etag,
                      "X-Linked-Size": str(len(data)),
                      "Location": "http://localhost:%d/_blobs/%s/%s/%s" % (port, rtype, rid, etag)})
            return self.reply(302, b"", h, "text/plain")
        h["ETag"] = '"%s"' % etag
        self.body(repo, path, data, h)

    def body(self, repo, path, data, headers):
        if self.command == "HEAD":
            return self.reply(200, data, headers, "application/octet-stream")
        n = self.hub.count((repo.id, path), path)
        rng = self.headers.get("Range")
        with self.hub.lock:
            if rng:
                self.hub.stats["ranges"].append([repo.id, path, rng])
        f = repo.fault
        if f == "flaky" and n <= 2:
            return self.error(500, "internal error (injected)")
        if f == "corrupt" or (f == "corrupt-once" and n == 1):
            data = bytearray(data)
            data[len(data) // 2] ^= 0x55
            data = bytes(data)
        start, end, code = 0, len(data), 200
        if rng:
            m = re.match(r"^bytes=(\d+)-(\d*)$", rng)
            if m:
                start = int(m.group(1))
                if m.group(2):
                    end = min(end, int(m.group(2)) + 1)
                if start >= len(data):
                    return self.reply(416, b"", {"Content-Range": "bytes */%d" % len(data)})
                code = 206
                headers = dict(headers, **{"Content-Range": "bytes %d-%d/%d" % (start, end - 1, len(data))})
        part = data[start:end]
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if f in ("truncated", "reset") and n == 1 and len(part) > 1:
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            if f == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.wfile.write(part)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mock_hub.py SHARED_DIR")
    Handler.hub = Hub(sys.argv[1])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
