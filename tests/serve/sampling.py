"""The official openai client's sampling parameters, standard and extended, against `canopy serve`:
presence and frequency penalties as keyword arguments, llama.cpp's `top_k`, `min_p`,
`repeat_penalty` and `repeat_last_n` as extra fields; each changes the output or is refused by
name.

Usage: sampling.py BASE_URL
"""

import openai

from util import client, model_id

c = client()
model = model_id(c)
hello = [{"role": "user", "content": "Name three trees."}]

# Every parameter at once, sampled with a seed: accepted, and the same seed gives the same reply.
settings = dict(
    temperature=0.9,
    top_p=0.95,
    presence_penalty=0.5,
    frequency_penalty=0.25,
    seed=11,
    extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.1, "repeat_last_n": 32},
)
first = c.chat.completions.create(model=model, messages=hello, max_tokens=12, **settings)
again = c.chat.completions.create(model=model, messages=hello, max_tokens=12, **settings)
text = first.choices[0].message.content
assert text, first
assert text == again.choices[0].message.content, (text, again.choices[0].message.content)
print("all settings", repr(text))

# The penalties reach the engine: greedy decoding of a repetitive prompt repeats, penalised it
# stops repeating, and a window of 0 turns the penalties off again.
repeat = "1, 1, 1, 1, 1, 1, 1, 1,"


def complete(**extra):
    done = c.completions.create(model=model, prompt=repeat, max_tokens=12, temperature=0, **extra)
    return done.choices[0].text


plain = complete()
penalised = complete(presence_penalty=1.0, extra_body={"repeat_penalty": 2.0})
windowless = complete(presence_penalty=1.0, extra_body={"repeat_penalty": 2.0, "repeat_last_n": 0})
assert plain != penalised, f"the penalties changed nothing: {plain!r}"
assert plain == windowless, f"a window of 0 must turn the penalties off: {plain!r} vs {windowless!r}"
print("plain", repr(plain), "penalised", repr(penalised))

# min-p 1 keeps only the most likely token: sampling at any temperature is greedy decoding.
greedy = complete()
kept = c.completions.create(
    model=model, prompt=repeat, max_tokens=12, temperature=1.5, seed=5, extra_body={"min_p": 1.0}
).choices[0].text
assert kept == greedy, f"min_p 1 must keep only the top token: {kept!r} vs {greedy!r}"
print("min_p 1 is greedy")

# Out of range: a 400 naming the parameter, raised by the client as BadRequestError.
for param, value in [
    ("presence_penalty", 2.5),
    ("frequency_penalty", -2.5),
    ("min_p", 1.5),
    ("top_k", 5000),
    ("repeat_penalty", 0),
    ("repeat_last_n", -1),
]:
    try:
        c.chat.completions.create(model=model, messages=hello, max_tokens=4, extra_body={param: value})
        raise AssertionError(f"{param}={value} accepted")
    except openai.BadRequestError as e:
        assert e.param == param, (param, e.body)
        assert e.code == "invalid_request", (param, e.body)
        assert param in e.message, (param, e.message)
        print("ok refused", param, value, "-", e.body["message"])

reply = c.chat.completions.create(model=model, messages=hello, max_tokens=4, temperature=0)
assert reply.choices[0].message.content, reply
print("ok still serving")
