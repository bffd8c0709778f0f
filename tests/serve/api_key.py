"""With --api-key KEY: no key or a wrong one is 401, the right one works.

Usage: api_key.py BASE_URL KEY
"""

import sys

import openai

from util import check_error, client, raw

key = sys.argv[2]
status, _, body = raw("GET", "/v1/models")
check_error(status, body, 401, "missing API key")
status, _, body = raw("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
check_error(status, body, 401, "wrong API key")
try:
    client("wrong").models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError:
    print("ok client sees AuthenticationError")
c = client(key)
model = c.models.list().data[0].id
reply = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
assert reply.choices[0].message.content
print("ok with the key")
