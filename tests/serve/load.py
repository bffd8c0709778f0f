"""A bounded load run: CLIENTS threads x REQUESTS small requests against a small queue. Every
request is answered 200 or refused 429, none is lost, and the worker's memory stays flat.

Usage: load.py BASE_URL SERVER_PID
"""

import sys
import threading

import openai

from util import client, model_id, rss_kib, worker_pid

CLIENTS, REQUESTS = 8, 25
server_pid = int(sys.argv[2])
c = client()
model = model_id(c)
# Start the worker and load the model before measuring.
c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
worker = worker_pid(server_pid)

lock = threading.Lock()
outcomes = {"ok": 0, "busy": 0, "other": []}
rss = []
total = CLIENTS * REQUESTS


def record(kind, detail=None):
    with lock:
        if kind == "other":
            outcomes["other"].append(detail)
        else:
            outcomes[kind] += 1
        finished = outcomes["ok"] + outcomes["busy"] + len(outcomes["other"])
        if finished % 10 == 0:
            rss.append(rss_kib(worker))


def run(i):
    for j in range(REQUESTS):
        try:
            r = c.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Say a number ({i}, {j})."}],
                max_tokens=4,
                temperature=0.7,
                seed=i * 100 + j,
            )
            assert r.choices[0].message.content is not None
            record("ok")
        except openai.RateLimitError:
            record("busy")
        except Exception as e:  # noqa: BLE001 - anything else is a failure, counted and shown
            record("other", repr(e))


threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"answered {outcomes['ok']}, refused {outcomes['busy']}, other {outcomes['other'][:3]}")
assert not outcomes["other"], outcomes["other"]
assert outcomes["ok"] + outcomes["busy"] == total, outcomes
assert outcomes["ok"] >= CLIENTS, "almost nothing was answered"
assert worker_pid(server_pid) == worker, "the worker was replaced during the run"
quarter = max(1, len(rss) // 4)
first, last = max(rss[:quarter]), max(rss[-quarter:])
print(f"worker RSS: first quarter {first} KiB, last quarter {last} KiB ({len(rss)} samples)")
assert last <= first * 1.5, f"worker RSS grew from {first} to {last} KiB"
print("ok")
