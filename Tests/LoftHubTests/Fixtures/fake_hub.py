#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub for LoftHubTests (stdlib only).

    python3 fake_hub.py ROOT PORT_FILE LOG_FILE [TOKEN]

Serves the model files under ROOT/<org>/<name>/ as
GET /api/models/<org>/<name>/revision/<rev>  -> {"sha": ..., "siblings": [...]}
GET /<org>/<name>/resolve/<rev>/<file>       -> the file (Range: bytes=N- honoured)
with the commit "0123456789abcdef0123456789abcdef01234567", and datasets under
ROOT/datasets/<org>/<name>/main/ (commit COMMIT) and .../convert/ (the Hub's
Parquet conversion, revision refs/convert/parquet, commit CONVERT_COMMIT):
GET /api/datasets/<org>/<name>/revision/<rev>  -> {"sha": ..., "siblings": [...]} (recursive)
GET /datasets/<org>/<name>/resolve/<commit>/<path> -> the file. With TOKEN, every
request without "Authorization: Bearer TOKEN" gets 401. Unknown repos and
files get 404. Writes the chosen port to PORT_FILE and one line per request
("METHOD PATH RANGE AUTH") to LOG_FILE.
"""
import http.server
import json
import os
import sys

ROOT, PORT_FILE, LOG_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
TOKEN = sys.argv[4] if len(sys.argv) > 4 else None
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONVERT_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        rng = self.headers.get("Range", "")
        with open(LOG_FILE, "a") as f:
            f.write(f"GET {self.path} {rng or '-'} {auth or '-'}\n")
        if TOKEN and auth != f"Bearer {TOKEN}":
            return self.send(401, b'{"error":"Invalid credentials"}')
        parts = self.path.strip("/").split("/")
        if parts[:2] == ["api", "datasets"] and len(parts) == 6 and parts[4] == "revision":
            rev = parts[5].replace("%2F", "/")
            sub, sha = ("convert", CONVERT_COMMIT) if rev == "refs/convert/parquet" else ("main", COMMIT)
            repo = os.path.join(ROOT, "datasets", parts[2], parts[3], sub)
            if not os.path.isdir(repo):
                return self.send(404, b'{"error":"Repository not found"}')
            files = sorted(os.path.relpath(os.path.join(d, n), repo) for d, _, ns in os.walk(repo) for n in ns)
            body = json.dumps({"sha": sha, "siblings": [{"rfilename": n} for n in files]}).encode()
            return self.send(200, body, [("Content-Type", "application/json")])
        if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
            sub = "convert" if parts[4] == CONVERT_COMMIT else "main"
            path = os.path.join(ROOT, "datasets", parts[1], parts[2], sub, *[p.replace("%20", " ") for p in parts[5:]])
            if not os.path.isfile(path):
                return self.send(404, b"Entry not found")
            data = open(path, "rb").read()
            if rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                return self.send(206, data[start:], [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")])
            return self.send(200, data)
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
            repo = os.path.join(ROOT, parts[2], parts[3])
            if not os.path.isdir(repo):
                return self.send(404, b'{"error":"Repository not found"}')
            files = sorted(os.listdir(repo))
            body = json.dumps({"sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}).encode()
            return self.send(200, body, [("Content-Type", "application/json")])
        if len(parts) >= 5 and parts[2] == "resolve":
            path = os.path.join(ROOT, parts[0], parts[1], "/".join(parts[4:]))
            if not os.path.isfile(path):
                return self.send(404, b"Entry not found")
            data = open(path, "rb").read()
            if rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                return self.send(206, data[start:], [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"),
                                                     ("X-Repo-Commit", COMMIT)])
            return self.send(200, data, [("X-Repo-Commit", COMMIT)])
        return self.send(404, b"not found")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
