"""A model hub on 127.0.0.1 for the app's end-to-end tests, answering the hub's documented
endpoints over real files:

  GET /api/models?search=Q           repositories whose id contains Q (JSON list)
  GET /api/models/OWNER/NAME/tree/REV files with their LFS sha256 and size (JSON list)
  GET|HEAD /OWNER/NAME/resolve/REV/PATH  302 to /cdn/..., with X-Linked-Etag and X-Linked-Size
  GET /cdn/OWNER/NAME/PATH            the bytes, honouring `Range: bytes=N-`

Errors carry the hub's X-Error-Code header. Python 3 standard library only.
"""
import hashlib
import http.server
import json
import threading
import urllib.parse


class Repo:
    def __init__(self, repo_id, files, revision="main"):
        """`files`: {path: (local file or None, listed size or None)}; a file with no local copy is
        listed (with the listed size) but cannot be downloaded."""
        self.id = repo_id
        self.revision = revision
        self.files = {}
        for path, (local, listed) in files.items():
            sha = size = None
            if local is not None:
                digest = hashlib.sha256()
                with open(local, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                sha = digest.hexdigest()
                size = local.stat().st_size
            self.files[path] = (local, listed or size, sha or "0" * 64)


class Hub:
    def __init__(self, repos, port=0):
        self.repos = {r.id: r for r in repos}
        self.requests = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, head=True)

            def do_GET(self):
                hub.answer(self, head=False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()

    @staticmethod
    def send(handler, status, headers=(), body=b"", head=False):
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def error(self, handler, status, code, message, head):
        self.send(handler, status, [("X-Error-Code", code), ("X-Error-Message", message),
                                    ("Content-Type", "application/json")],
                  json.dumps({"error": message}).encode(), head)

    def answer(self, handler, head):
        url = urllib.parse.urlsplit(handler.path)
        self.requests.append(url.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if url.path == "/api/models":
            needle = query.get("search", [""])[0].lower()
            found = [{"id": r.id, "modelId": r.id, "downloads": 1200 + 100 * i, "likes": 7,
                      "tags": ["gguf"], "pipeline_tag": "text-generation"}
                     for i, r in enumerate(self.repos.values()) if needle in r.id.lower()]
            body = json.dumps(found).encode()
            return self.send(handler, 200, [("Content-Type", "application/json")], body, head)
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":
            repo = self.repos.get(f"{parts[2]}/{parts[3]}")
            if repo is None:
                return self.error(handler, 401, "RepoNotFound", "Repository not found", head)
            if parts[5] != repo.revision:
                return self.error(handler, 404, "RevisionNotFound", f"Invalid rev id: {parts[5]}", head)
            items = [{"type": "file", "oid": "0" * 40, "size": size, "path": path,
                      "lfs": {"oid": sha, "size": size, "pointerSize": 134}}
                     for path, (_, size, sha) in repo.files.items()]
            return self.send(handler, 200, [("Content-Type", "application/json")], json.dumps(items).encode(), head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self.repos.get(f"{parts[0]}/{parts[1]}")
            if repo is None:
                return self.error(handler, 401, "RepoNotFound", "Repository not found", head)
            if parts[3] != repo.revision:
                return self.error(handler, 404, "RevisionNotFound", "Invalid rev id", head)
            path = "/".join(parts[4:])
            entry = repo.files.get(path)
            if entry is None or entry[0] is None:
                return self.error(handler, 404, "EntryNotFound", f"{path} does not exist", head)
            location = f"{self.endpoint}/cdn/{repo.id}/{urllib.parse.quote(path)}?X-Signature=abc"
            return self.send(handler, 302, [("Location", location), ("X-Linked-Etag", f'"{entry[2]}"'),
                                            ("X-Linked-Size", str(entry[1]))], b"", head)
        if len(parts) >= 4 and parts[0] == "cdn":
            repo = self.repos.get(f"{parts[1]}/{parts[2]}")
            entry = repo and repo.files.get("/".join(parts[3:]))
            if not entry or entry[0] is None:
                return self.send(handler, 404, head=head)
            data = entry[0].read_bytes()
            start = 0
            rng = handler.headers.get("Range", "")
            if rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes="):-1])
                if start >= len(data):
                    return self.send(handler, 416, [("Content-Range", f"bytes */{len(data)}")], b"", head)
                return self.send(handler, 206, [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")],
                                 data[start:], head)
            return self.send(handler, 200, [], data, head)
        return self.send(handler, 404, head=head)
