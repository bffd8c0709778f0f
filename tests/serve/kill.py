"""The worker killed (SIGKILL) during a streamed reply: that client gets an error event, and the
next request succeeds on a fresh worker.

Usage: kill.py BASE_URL SERVER_PID
"""

import os
import signal
import sys

import openai

from util import client, model_id, worker_pid

server_pid = int(sys.argv[2])
c = client()
model = model_id(c)
stream = c.completions.create(
    model=model, prompt="Count from 1 to 1000: 1, 2, 3, 4,", max_tokens=1000, temperature=0, stream=True
)
seen = 0
try:
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            seen += 1
            if seen == 3:
                victim = worker_pid(server_pid)
                os.kill(victim, signal.SIGKILL)
    raise AssertionError(f"the stream ended normally after {seen} pieces")
except openai.APIError as e:
    print("ok error event:", e.message)
    assert "worker" in str(e.message), e.message

reply = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
assert reply.choices[0].message.content
assert worker_pid(server_pid) != victim
print("ok fresh worker")
