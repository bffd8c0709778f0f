"""Bad requests get the right status and an OpenAI-shaped error, and the server keeps serving.
Expects a server started with --context 256.

Usage: bad_input.py BASE_URL
"""

from util import check_error, client, model_id, oversized, raw

c = client()
model = model_id(c)
chat = "/v1/chat/completions"
hello = [{"role": "user", "content": "Hello"}]

status, _, body = raw("POST", chat, b'{"model": "x", "messages": [')
check_error(status, body, 400, "malformed JSON")

status, body = oversized(chat, 2 << 20)
check_error(status, body, 413, "2 MiB body")

status, _, body = raw("POST", chat, {"model": "gpt-4o", "messages": hello})
check_error(status, body, 404, "unknown model")
assert body["error"]["code"] == "model_not_found", body

status, _, body = raw("POST", chat, {"model": model, "messages": hello, "max_tokens": 100000})
check_error(status, body, 400, "max_tokens beyond the context")
assert "max_tokens" in body["error"]["message"], body

status, _, body = raw("POST", chat, {"model": model, "messages": hello, "n": 2})
check_error(status, body, 400, "n: 2")
assert body["error"]["param"] == "n", body

status, _, body = raw("POST", chat, {"model": model, "messages": hello, "tools": [{"type": "function"}]})
check_error(status, body, 400, "tools")

status, _, body = raw("GET", "/v1/models", headers={"Host": "evil.example:80"})
check_error(status, body, 403, "wrong Host header")

long_prompt = "Tell me about trees. " * 200
status, _, body = raw("POST", chat, {"model": model, "messages": [{"role": "user", "content": long_prompt}], "max_tokens": 8})
check_error(status, body, 400, "prompt longer than the context")
assert "context" in body["error"]["message"], body

# The official client raises the matching exception types.
import openai

try:
    c.chat.completions.create(model="nope", messages=hello)
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    print("ok client sees", type(e).__name__)

reply = c.chat.completions.create(model=model, messages=hello, max_tokens=4, temperature=0)
assert reply.choices[0].message.content, reply
print("ok still serving")
