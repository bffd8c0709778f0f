"""The official openai client against `canopy serve`: models, chat (plain and streamed),
completions, concurrent clients, and a client that hangs up mid-stream.

Usage: client.py BASE_URL
"""

import threading
import time

from util import client

c = client()
models = c.models.list().data
assert len(models) == 1 and models[0].owned_by == "canopy", models
model = models[0].id
print("model", model)

messages = [{"role": "user", "content": "Write a haiku about trees."}]
reply = c.chat.completions.create(model=model, messages=messages, max_tokens=32, temperature=0)
text = reply.choices[0].message.content
assert text, reply
assert reply.choices[0].finish_reason in ("stop", "length"), reply
assert reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 5, reply.usage
assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
extra = reply.model_extra["canopy"]
assert extra["plan"] == "none" and "mean_accepted_per_step" in extra and extra["steps"] >= 1, extra
print("chat", repr(text))

# The client resends the conversation: the worker kept its KV cache and decodes only what is new.
follow = messages + [
    {"role": "assistant", "content": text},
    {"role": "user", "content": "Now one about rivers."},
]
second = c.chat.completions.create(model=model, messages=follow, max_tokens=16, temperature=0)
cached = second.usage.prompt_tokens_details.cached_tokens
assert cached > 10 and cached < second.usage.prompt_tokens, second.usage
assert second.model_extra["canopy"]["prefix_reused_tokens"] == cached, second.model_extra
assert second.model_extra["canopy"]["prefill_tokens"] == second.usage.prompt_tokens - cached
print("follow-up reused", cached, "of", second.usage.prompt_tokens, "prompt tokens")

pieces = []
usage = None
finish = None
stream = c.chat.completions.create(
    model=model,
    messages=messages,
    max_tokens=32,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert len(pieces) >= 3, pieces
assert "".join(pieces) == text, f"streamed {''.join(pieces)!r} != {text!r}"
assert usage is not None and usage.completion_tokens == reply.usage.completion_tokens, usage
assert finish == reply.choices[0].finish_reason
print("stream", len(pieces), "pieces")

done = c.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
assert done.choices[0].text and done.usage.completion_tokens >= 1, done
assert done.choices[0].finish_reason in ("stop", "length")
print("completion", repr(done.choices[0].text))

answers = {}


def ask(i):
    r = c.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Name a colour. ({i})"}], max_tokens=8, temperature=0
    )
    answers[i] = r.choices[0].message.content


threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert sorted(answers) == [0, 1, 2, 3] and all(answers.values()), answers
print("concurrent", answers)

# A long generation, cut after a few pieces: the worker must be free for the next request at once.
long = c.completions.create(
    model=model, prompt="Count from 1 to 1000: 1, 2, 3, 4,", max_tokens=1500, temperature=0, stream=True
)
seen = 0
for chunk in long:
    if chunk.choices and chunk.choices[0].text:
        seen += 1
    if seen >= 3:
        break
long.close()
cut = time.monotonic()
nxt = c.completions.create(model=model, prompt="Hello", max_tokens=4, temperature=0, stream=True)
for chunk in nxt:
    started = time.monotonic() - cut
    break
for chunk in nxt:
    pass
print(f"next request started {started:.3f} s after the cut")
assert started < 5.0, f"the next request waited {started:.1f} s: the cut generation kept the worker"
print("ok")
