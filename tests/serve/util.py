"""Helpers shared by the server test scripts: raw HTTP requests and the worker's process id."""

import http.client
import json
import os
import socket
import sys
import urllib.parse


def base_url():
    """The server's base URL, http://HOST:PORT, from the command line."""
    return sys.argv[1].rstrip("/")


def client(api_key="unused"):
    import openai

    return openai.OpenAI(base_url=base_url() + "/v1", api_key=api_key, max_retries=0, timeout=60)


def model_id(c):
    return c.models.list().data[0].id


def raw(method, path, body=None, headers=None):
    """One request over http.client; returns (status, headers, parsed JSON or text)."""
    url = urllib.parse.urlsplit(base_url())
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    conn.request(method, path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    try:
        data = json.loads(data)
    except ValueError:
        pass
    return response.status, dict(response.getheaders()), data


def oversized(path, size):
    """Posts a body of `size` bytes and reads the answer as soon as it comes: a server that refuses
    the body early may close the connection before all of it is sent."""
    url = urllib.parse.urlsplit(base_url())
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"{" + b" " * 65535)
    response = http.client.HTTPResponse(sock)
    response.begin()
    data = json.loads(response.read().decode())
    status = response.status
    try:
        sock.sendall(b" " * (size - 65536))
    except OSError:
        pass
    sock.close()
    return status, data


def check_error(status, body, want_status, what):
    """Asserts an OpenAI-shaped error with the expected status."""
    assert status == want_status, f"{what}: status {status}, expected {want_status}: {body}"
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"{what}: not an OpenAI error: {body}"
    error = body["error"]
    for field in ("message", "type", "code"):
        assert field in error, f"{what}: error without {field}: {body}"
    assert error["message"], f"{what}: empty message"
    print(f"ok {what}: {status} {error['code']}: {error['message']}")


def children(pid):
    """Process ids whose parent is pid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def worker_pid(server_pid):
    """The server's one worker child."""
    kids = children(server_pid)
    assert len(kids) == 1, f"expected one worker child of {server_pid}, found {kids}"
    return kids[0]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
