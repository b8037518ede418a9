#!/usr/bin/env python3
"""Generate the small, clean chat dataset that ships with ``sft-course``.

Writes ``train.jsonl`` (480 conversations) and ``test.jsonl`` (60 conversations)
in Hugging Face smoltalk's schema, one JSON object per line::

    {"messages": [{"role": "user", "content": "..."}, ...], "source": "<category>"}

Why synthetic and templated?  The course trains a *tiny* randomly initialised
language model (2 layers, hidden size 64) on CPU for a couple of minutes, and
its train/validation loss must visibly fall.  So the data mixes 14 categories
(arithmetic, unit conversion, word tools, capitals, ...) that each use a few
phrasing templates with consistent answer patterns, filled from word lists and
numbers.  Every fact or computation is produced in code (or taken from small
tables) so the samples are correct; about a quarter carry a DeepSeek-R1 style
``<think>...</think>`` reasoning trace before the final answer.

Guarantees (checked before writing; the script exits non-zero otherwise): the
course's own validator (``sft_course.data.validate``) finds no problem in either
split, nor in both together (so no test conversation equals a train one); and,
specific to this generator, every conversation has 1-4 exchanges and no content
has leading or trailing whitespace.  Output is byte-identical for a given
``--seed`` (generation uses only the standard library and a fixed ``random.Random``).

Usage:  python tools/make_samples.py [--seed 0] [--out sft_course/samples]
        python tools/make_samples.py --check   # exit 1 if the committed files differ from the generator's output
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_TEST = 480, 60
EXCHANGE_MIX = {1: 0.50, 2: 0.25, 3: 0.15, 4: 0.10}  # share of 1..4 exchanges
SYSTEM_PROB = 0.30  # share of conversations with a system prompt
THINK_PROB = 0.70   # within THINK_CATEGORIES -> ~25% of all conversations
THINK_CATEGORIES = {"arithmetic", "unit-conversion", "word-tools", "sorting", "days-dates"}

# ----------------------------------------------------------------- shared bits
GENERAL_SYSTEM = [
    "You are a concise assistant.", "Answer in plain English for a beginner.",
    "You are a helpful assistant.", "You are a friendly tutor. Keep your answers short.",
    "Be accurate and brief.", "You are a patient teacher who explains things simply.",
    "Reply in one or two sentences when possible.",
]
ACME_SYSTEM = "You are a support agent for Acme Cloud. Reply politely."
JSON_SYSTEM = "You only reply with valid JSON."
THANKS = ["Thanks!", "Great, thank you.", "Perfect, thanks a lot.", "That helps, thanks!",
          "Got it. Thank you!"]
WELCOME = ["You're welcome! Let me know if you have another question.",
           "Happy to help! Feel free to ask me anything else.",
           "Glad it was useful. Ask me again any time.",
           "You're welcome. Good luck with the rest of your work!"]
NAMES = ["Alice", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Keiko", "Liam", "Maya", "Noah", "Olga", "Priya", "Omar", "Rosa", "Sam", "Tara"]
SURNAMES = ["Martin", "Okafor", "Silva", "Novak", "Larsen", "Tanaka", "Moreau", "Patel"]
CITIES = ["Lyon", "Porto", "Oslo", "Kyoto", "Denver", "Nairobi", "Lima", "Krakow", "Dublin",
          "Adelaide", "Seville", "Hamburg"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [("January", 31), ("February", 28), ("March", 31), ("April", 30), ("May", 31),
          ("June", 30), ("July", 31), ("August", 31), ("September", 30), ("October", 31),
          ("November", 30), ("December", 31)]


def think(steps: list[str], answer: str) -> str:
    """Prefix ``answer`` with a DeepSeek-R1 style reasoning trace."""
    return "<think>\n" + "\n".join(steps) + "\n</think>\n\n" + answer


def maybe_think(use: bool, steps: list[str], answer: str) -> str:
    return think(steps, answer) if use else answer


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def closer(rng: random.Random) -> tuple[str, str]:
    return rng.choice(THANKS), rng.choice(WELCOME)


def chain(rng, n, turn, closer_prob=0.25):
    """``turn(first)`` builds one exchange; the last of several may be a thank-you."""
    out = [turn(True)]
    for i in range(1, n):
        last = i == n - 1
        out.append(closer(rng) if last and rng.random() < closer_prob else turn(False))
    return out


# ---------------------------------------------------------------- arithmetic
ARITH_Q = {
    "+": ["What is {a} plus {b}?", "What is {a} + {b}?", "Can you add {a} and {b} for me?",
          "Calculate {a} + {b}.", "What's the sum of {a} and {b}?"],
    "-": ["What is {a} minus {b}?", "What is {a} - {b}?", "Subtract {b} from {a}.",
          "Calculate {a} - {b}.", "What do you get if you take {b} away from {a}?"],
    "*": ["What is {a} times {b}?", "What is {a} × {b}?", "Multiply {a} by {b}.",
          "Calculate {a} * {b}.", "What's the product of {a} and {b}?"],
}
ARITH_FOLLOW = ["And what about {a} {w} {b}?", "Now do {a} {s} {b}.",
                "What if it were {a} {w} {b}?", "Great. And {a} {w} {b}?"]
ARITH_A = {
    "+": ["{a} plus {b} equals {c}, so the answer is {c}.", "The sum of {a} and {b} is {c}.",
          "{a} + {b} = {c}, so the answer is {c}."],
    "-": ["{a} minus {b} equals {c}, so the answer is {c}.", "The difference between {a} and {b} is {c}.",
          "{a} - {b} = {c}, so the answer is {c}."],
    "*": ["{a} times {b} equals {c}, so the answer is {c}.", "The product of {a} and {b} is {c}.",
          "{a} × {b} = {c}, so the answer is {c}."],
}
OPWORD, OPSYM = {"+": "plus", "-": "minus", "*": "times"}, {"+": "+", "-": "-", "*": "×"}


def arith_steps(op: str, a: int, b: int) -> list[str]:
    if op == "+":
        t, o = a // 10 * 10 + b // 10 * 10, a % 10 + b % 10
        return ["Split both numbers into tens and ones.", f"Tens: {a // 10 * 10} + {b // 10 * 10} = {t}.",
                f"Ones: {a % 10} + {b % 10} = {o}.", f"Total: {t} + {o} = {a + b}."]
    if op == "-":
        bt, bo = b // 10 * 10, b % 10
        return [f"Subtract the tens first: {a} - {bt} = {a - bt}.",
                f"Then subtract the ones: {a - bt} - {bo} = {a - b}."]
    at, ao = a // 10 * 10, a % 10
    return [f"Break {a} into {at} + {ao}.", f"{at} × {b} = {at * b} and {ao} × {b} = {ao * b}.",
            f"Add them: {at * b} + {ao * b} = {a * b}."]


def gen_arithmetic(rng, n, use_think):
    def turn(first):
        op = rng.choice("+-*")
        if op == "+":
            a, b = rng.randint(10, 99), rng.randint(10, 99)
        elif op == "-":
            a = rng.randint(30, 99)
            b = rng.randint(11, a - 1)
        else:
            a, b = rng.choice([x for x in range(11, 50) if x % 10]), rng.randint(3, 9)
        c = {"+": a + b, "-": a - b, "*": a * b}[op]
        q = rng.choice(ARITH_Q[op] if first else ARITH_FOLLOW)
        q = q.format(a=a, b=b, w=OPWORD[op], s=OPSYM[op])
        ans = rng.choice(ARITH_A[op]).format(a=a, b=b, c=c)
        return q, maybe_think(use_think, arith_steps(op, a, b), ans)
    return chain(rng, n, turn)


# ----------------------------------------------------------- unit conversion
# (from long, from short, to long, to short, factor or None, first step, range)
CONVERSIONS = [
    ("kilometers", "km", "miles", "miles", "0.621371", "1 km is about 0.621371 miles.", (2, 300)),
    ("miles", "miles", "kilometers", "km", "1.609344", "1 mile is 1.609344 km.", (2, 200)),
    ("kilograms", "kg", "pounds", "lb", "2.20462", "1 kg is about 2.20462 lb.", (2, 150)),
    ("pounds", "lb", "kilograms", "kg", "0.453592", "1 lb is about 0.453592 kg.", (2, 300)),
    ("degrees Celsius", "°C", "degrees Fahrenheit", "°F", None, "C to F", (-20, 40)),
    ("degrees Fahrenheit", "°F", "degrees Celsius", "°C", None, "F to C", (0, 110)),
]
CONV_Q = ["Convert {x} {fl} to {tl}.", "How many {tl} is {x} {fl}?", "What is {x} {fs} in {tl}?",
          "Please convert {x} {fs} into {tl}."]
CONV_FOLLOW = ["And {x} {fl}?", "What about {x} {fs}?", "Now convert {x} {fl}."]
CONV_A = ["{x} {fs} is {about}{y} {ts}{note}.", "{x} {fl} equals {about}{y} {tl}{note}.",
          "That comes to {about}{y} {tl}{note}."]


def dec_str(d: Decimal) -> str:
    """Plain decimal text without trailing zeros (45.0 -> 45, 12.50 -> 12.5)."""
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "0") else s


def convert(conv, x: int) -> tuple[Decimal, list[str]]:
    _, _, _, _, factor, first_step, _ = conv
    if factor:
        v = Decimal(x) * Decimal(factor)
        return v, [first_step, f"{x} × {factor} = {dec_str(v)}."]
    if first_step == "C to F":
        p = Decimal(x) * Decimal("1.8")
        v = p + 32
        return v, [f"Multiply by 9/5: {x} × 1.8 = {dec_str(p)}.", f"Then add 32: {dec_str(p)} + 32 = {dec_str(v)}."]
    diff = x - 32
    v = Decimal(diff) * 5 / 9
    if v == v.to_integral_value():
        last = f"Multiply by 5/9: {diff} × 5 / 9 = {dec_str(v)}."
    else:
        last = f"Multiply by 5/9: {diff} × 5 / 9 ≈ {v.quantize(Decimal('0.01'), ROUND_HALF_UP)}."
    return v, [f"Subtract 32: {x} - 32 = {diff}.", last]


def gen_unit_conversion(rng, n, use_think):
    conv = rng.choice(CONVERSIONS)
    fl, fs, tl, ts, _, _, (lo, hi) = conv

    def turn(first):
        x = rng.choice([v for v in range(lo, hi + 1) if v not in (-1, 1)])
        v, steps = convert(conv, x)
        y = v.quantize(Decimal("0.1"), ROUND_HALF_UP)
        if y != v:
            steps.append(f"Rounded to one decimal: {y}.")
        q = rng.choice(CONV_Q if first else CONV_FOLLOW).format(x=x, fl=fl, fs=fs, tl=tl)
        ans = rng.choice(CONV_A).format(x=x, fl=fl, fs=fs, ts=ts, tl=tl, y=dec_str(v) if y == v else str(y),
                                        about="" if y == v else "about ",
                                        note=" exactly" if y == v else ", rounded to one decimal")
        return q, maybe_think(use_think, steps, ans)
    return chain(rng, n, turn)


# ---------------------------------------------------------------- word tools
WORDS = ("banana planet garden rocket window pencil python coffee mirror castle bottle dragon "
         "summer orange library teacher kitchen balloon elephant mountain notebook keyboard "
         "sunflower umbrella tomato guitar puzzle candle forest island letter rabbit silver "
         "yellow pepper butter cookie marble jungle breeze").split()
PHRASES = ["good morning", "hello world", "keep it simple", "see you soon", "learning is fun",
           "read the docs", "small steps matter", "train the model", "happy new year", "time to code"]
WORD_TASKS = {
    "reverse": ["Reverse the word '{w}'.", "What is '{w}' spelled backwards?", "Write '{w}' in reverse."],
    "length": ["How many letters are in '{w}'?", "Count the letters in the word '{w}'.",
               "How long is the word '{w}' in letters?"],
    "count": ["How many times does the letter '{c}' appear in '{w}'?",
              "Count the letter '{c}' in the word '{w}'."],
    "upper": ["Convert '{w}' to uppercase.", "Write '{w}' in capital letters.",
              "Can you make '{w}' all caps?"],
    "dashes": ["Spell '{w}' with dashes between the letters.", "Spell out '{w}' letter by letter."],
}
WORD_FOLLOW = ["Now do the same for '{w}'.", "And '{w}'?", "Great, what about '{w}'?"]


def word_answer(task: str, w: str, c: str) -> tuple[list[str], str]:
    dashed = "-".join(w)
    if task == "reverse":
        r = w[::-1]
        return ([f"Letters in order: {dashed}.", f"Read from the end: {'-'.join(r)}.", f"Joined: {r}."],
                f"Reading '{w}' from the last letter to the first gives '{r}'.")
    if task == "length":
        return ([f"Spell it out: {dashed}.", f"Count them: {len(w)}."],
                f"The word '{w}' has {plural(len(w), 'letter')} in total.")
    if task == "count":
        pos = [str(i + 1) for i, ch in enumerate(w) if ch == c]
        if not pos:
            return ([f"Letters: {dashed}.", f"None of them is '{c}'."],
                    f"The letter '{c}' does not appear in '{w}'.")
        return ([f"Letters: {dashed}.", f"'{c}' is at position {', '.join(pos)}.", f"That is {len(pos)}."],
                f"The letter '{c}' appears {plural(len(pos), 'time')} in '{w}'.")
    if task == "upper":
        return (["Replace each letter with its capital form and keep the spaces.", f"Result: {w.upper()}."],
                f"Here is the phrase in uppercase: '{w.upper()}'.")
    return ([f"Take the letters one at a time: {', '.join(w)}.", "Join them with dashes."],
            f"Here is '{w}' spelled with dashes: {dashed}.")


def gen_word_tools(rng, n, use_think):
    task = rng.choice(list(WORD_TASKS))
    pool = PHRASES if task == "upper" else WORDS
    words = iter(rng.sample(pool, n))
    w0 = next(words)  # the letter to count stays the same in follow-ups
    c = rng.choice(w0) if rng.random() < 0.8 else rng.choice([x for x in "zqxjvk" if x not in w0])

    def turn(first):
        w = w0 if first else next(words)
        q = rng.choice(WORD_TASKS[task] if first else WORD_FOLLOW).format(w=w, c=c)
        steps, ans = word_answer(task, w, c)
        return q, maybe_think(use_think, steps, ans)
    return chain(rng, n, turn)


# ------------------------------------------------------------------ capitals
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasília"), ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"),
    ("Russia", "Moscow"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Ireland", "Dublin"), ("the Netherlands", "Amsterdam"), ("Austria", "Vienna"),
    ("Hungary", "Budapest"), ("New Zealand", "Wellington"), ("Morocco", "Rabat"),
]
CAP_Q = ["What is the capital of {c}?", "Which city is the capital of {c}?",
         "Tell me the capital of {c}.", "Name the capital city of {c}."]
CAP_REV_Q = ["Which country has {k} as its capital?", "{k} is the capital of which country?",
             "Of which country is {k} the capital?"]
CAP_FOLLOW = ["And the capital of {c}?", "What about {c}?", "How about {c}?"]
CAP_REV_FOLLOW = ["And {k}?", "What about {k}?"]


def gen_capitals(rng, n, use_think):
    reverse = rng.random() < 0.3
    pairs = rng.sample(CAPITALS, n)
    it = iter(pairs)

    def turn(first):
        c, k = next(it)
        if reverse:
            q = rng.choice(CAP_REV_Q if first else CAP_REV_FOLLOW)
            return q.format(c=c, k=k), f"{k} is the capital city of {c}."
        q = rng.choice(CAP_Q if first else CAP_FOLLOW)
        a = rng.choice(["The capital city of {c} is {k}.", "{k} is the capital city of {c}."])
        return q.format(c=c, k=k), a.format(c=c, k=k)
    return chain(rng, n, turn)


# --------------------------------------------------------------- definitions
# (bare term, term as used in "What is ...?", one-sentence definition)
GLOSSARY = [
    ("epoch", "an epoch", "An epoch is one complete pass of the training algorithm over the entire training dataset."),
    ("learning rate", "the learning rate", "The learning rate is a number that controls how big each update to the model's weights is during training."),
    ("tokenizer", "a tokenizer", "A tokenizer splits text into smaller units called tokens and maps each one to an integer ID."),
    ("token", "a token", "A token is a small piece of text, such as a word or part of a word, that a language model reads as one unit."),
    ("overfitting", "overfitting", "Overfitting happens when a model memorizes its training data and performs poorly on new, unseen data."),
    ("underfitting", "underfitting", "Underfitting happens when a model is too simple to capture the patterns in the data, so it does poorly even on the training set."),
    ("gradient", "a gradient", "A gradient is a vector of partial derivatives that shows how the loss changes as each parameter changes."),
    ("batch size", "the batch size", "The batch size is the number of training examples processed together before the model's weights are updated."),
    ("loss function", "a loss function", "A loss function measures how far the model's predictions are from the correct answers, and training tries to make it smaller."),
    ("gradient descent", "gradient descent", "Gradient descent is an optimization method that repeatedly moves the parameters a small step against the gradient to reduce the loss."),
    ("fine-tuning", "fine-tuning", "Fine-tuning means continuing to train a pretrained model on a smaller dataset for a specific task."),
    ("supervised fine-tuning", "supervised fine-tuning", "Supervised fine-tuning trains a pretrained language model on example prompts paired with the desired responses."),
    ("pretraining", "pretraining", "Pretraining is the first, large-scale training stage in which a model learns general patterns from a huge amount of text."),
    ("validation set", "a validation set", "A validation set is held-out data used to check how well a model generalizes while you tune it."),
    ("test set", "a test set", "A test set is data kept aside until the end to give a final, unbiased estimate of model performance."),
    ("embedding", "an embedding", "An embedding is a list of numbers that represents a token or item so that similar things get similar vectors."),
    ("attention", "attention", "Attention is a mechanism that lets a model weigh how relevant each token in the input is to every other token."),
    ("transformer", "a transformer", "A transformer is a neural network architecture built from attention and feed-forward layers, used by most modern language models."),
    ("neural network", "a neural network", "A neural network is a model made of layers of simple connected units whose weights are learned from data."),
    ("weight", "a weight", "A weight is a learnable number inside a model that scales a signal, and training adjusts the weights."),
    ("activation function", "an activation function", "An activation function is a non-linear function, such as ReLU, applied to a layer's outputs so the network can learn complex patterns."),
    ("dropout", "dropout", "Dropout is a regularization technique that randomly switches off some units during training to reduce overfitting."),
    ("regularization", "regularization", "Regularization is any technique that discourages a model from becoming too complex, which helps it generalize better."),
    ("optimizer", "an optimizer", "An optimizer is the algorithm, such as SGD or Adam, that uses gradients to update a model's parameters."),
    ("backpropagation", "backpropagation", "Backpropagation computes the gradient of the loss for every weight by applying the chain rule backwards through the network."),
    ("perplexity", "perplexity", "Perplexity measures how well a language model predicts text, and lower perplexity means the model is less surprised by the data."),
    ("chat template", "a chat template", "A chat template is a rule for turning a list of chat messages into the single text string a model actually sees."),
    ("context window", "the context window", "The context window is the maximum number of tokens a language model can read at once."),
    ("LoRA", "LoRA", "LoRA is a fine-tuning method that freezes the original weights and trains small low-rank matrices added to some layers."),
    ("hyperparameter", "a hyperparameter", "A hyperparameter is a setting chosen before training, such as the learning rate or batch size, rather than learned from data."),
    ("dataset", "a dataset", "A dataset is a collection of examples used to train or evaluate a model."),
    ("label", "a label", "A label is the correct answer attached to a training example."),
    ("inference", "inference", "Inference is the act of using a trained model to make predictions on new inputs."),
    ("checkpoint", "a checkpoint", "A checkpoint is a saved copy of a model's weights, and often the optimizer state, at a point during training."),
    ("function", "a function in programming", "A function is a named block of code that takes inputs, does some work, and can return a result."),
    ("variable", "a variable in programming", "A variable is a name that refers to a value stored in a program's memory."),
    ("loop", "a loop in programming", "A loop is code that repeats a set of instructions while a condition holds or once for each item in a collection."),
    ("list", "a list in Python", "In Python, a list is an ordered, changeable collection of items written inside square brackets."),
    ("dictionary", "a dictionary in Python", "In Python, a dictionary stores key-value pairs and lets you look up a value quickly by its key."),
    ("API", "an API", "An API is a set of rules that lets one program request data or services from another program."),
    ("JSON", "JSON", "JSON is a lightweight text format for storing and exchanging data as key-value pairs and lists."),
    ("virtual environment", "a virtual environment", "A virtual environment is an isolated Python setup with its own installed packages, separate from other projects."),
]
DEF_Q = ["What is {q}?", "Can you define {q}?", "Explain {q} in one sentence.",
         "In simple terms, what is {q}?", "What does the term '{t}' mean?"]
DEF_FOLLOW = ["And what is {q}?", "How about {q}?", "Next one: what does '{t}' mean?"]


def gen_definitions(rng, n, use_think):
    it = iter(rng.sample(GLOSSARY, n))

    def turn(first):
        t, q, d = next(it)
        return rng.choice(DEF_Q if first else DEF_FOLLOW).format(q=q, t=t), d
    return chain(rng, n, turn, closer_prob=0.35)


# ------------------------------------------------------------ JSON formatting
PRODUCTS = ["desk lamp", "water bottle", "notebook", "backpack", "headphones", "coffee mug",
            "phone case", "yoga mat"]
BOOKS = ["The Quiet River", "Stars Over Lima", "A Small Kitchen", "Learning to Sail",
         "The Last Garden", "Paper Boats", "Winter Roads"]
TODOS = ["buy groceries", "call the dentist", "write the report", "fix the login bug",
         "water the plants", "book train tickets"]


def json_record(rng) -> tuple[str, dict]:
    kind = rng.choice(["person", "product", "book", "task"])
    if kind == "person":
        r = {"name": rng.choice(NAMES), "age": rng.randint(18, 80), "city": rng.choice(CITIES)}
        d = rng.choice(["Make a JSON object for a person named {name}, age {age}, who lives in {city}.",
                        "Turn this into JSON: name {name}, age {age}, city {city}.",
                        "Give me JSON for this record: {name} is {age} years old and lives in {city}."])
        return d.format(**r), r
    if kind == "product":
        r = {"name": rng.choice(PRODUCTS), "price": float(f"{rng.randint(3, 99)}.{rng.choice(['49', '99'])}"),
             "in_stock": rng.random() < 0.6}
        d = rng.choice(["Create a JSON object for a product: {name}, price {price}, {stock}.",
                        "Turn this into JSON: product {name}, costs {price}, {stock}."])
        return d.format(stock="in stock" if r["in_stock"] else "out of stock", **r), r
    if kind == "book":
        r = {"title": rng.choice(BOOKS), "author": f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
             "year": rng.randint(1950, 2023)}
        d = rng.choice(["Format this book as JSON: '{title}' by {author}, published in {year}.",
                        "Make a JSON object for the book {title}, written by {author} in {year}."])
        return d.format(**r), r
    r = {"title": rng.choice(TODOS), "priority": rng.choice(["low", "medium", "high"]),
         "done": rng.random() < 0.4}
    d = rng.choice(["Write a JSON object for a to-do item: '{title}', priority {priority}, {status}.",
                    "Turn this task into JSON: {title} ({priority} priority, {status})."])
    return d.format(status="already done" if r["done"] else "not done yet", **r), r


def json_edit(rng, r: dict) -> str:
    """Mutate ``r`` in place with a small edit and return the user's request."""
    if "age" in r and rng.random() < 0.5:
        r["age"] += 1
        return f"{r['name']} just had a birthday. Update the age."
    if "name" in r and "email" not in r and "age" in r and rng.random() < 0.5:
        r["email"] = f"{r['name'].lower()}@example.com"
        return f"Add an email field: {r['email']}."
    if "price" in r and rng.random() < 0.5:
        r["price"] = round(r["price"] - 1, 2)
        return "Lower the price by 1."
    if "done" in r and not r["done"]:
        r["done"] = True
        return "Mark it as done."
    removable = [k for k in r if k not in ("name", "title", "tags")]
    if removable and ("tags" in r or (len(r) > 2 and rng.random() < 0.5)):
        key = rng.choice(removable)
        del r[key]
        return f"Now remove the {key} field."
    if "tags" in r:
        r["tags"].append("archived")
        return "Also add the tag archived."
    r["tags"] = sorted(rng.sample(["home", "work", "urgent", "gift", "sale", "new"], 2))
    return f"Add a tags field with {r['tags'][0]} and {r['tags'][1]}."


def gen_json(rng, n, use_think):
    state = {}

    def turn(first):
        if first:
            q, state["r"] = json_record(rng)
        else:
            q = json_edit(rng, state["r"])
        return q, json.dumps(state["r"], ensure_ascii=False)
    return chain(rng, n, turn, closer_prob=0.0)


# ------------------------------------------------------------------- support
SUPPORT = {
    "password": (["I forgot my Acme Cloud password. How can I reset it?",
                  "I can't log in to my account {email}. Can you help me reset my password?"],
                 "I'm sorry you're having trouble signing in. On the login page, click \"Forgot password\" and "
                 "enter the email address of your account. You will receive a reset link within a few minutes.",
                 "I didn't get the email.",
                 "Please check your spam folder first. If it isn't there, reply here and I will send a new "
                 "reset link right away."),
    "billing": (["Why was I charged ${amt} this month?", "Can you explain the ${amt} charge on my bill?"],
                "Thank you for reaching out. The ${amt} charge covers your usage during the last billing period. "
                "You can see a full breakdown under Billing > Invoices in the Acme Cloud console.",
                "Can I download that invoice as a PDF?",
                "Of course. Open Billing > Invoices, select invoice {inv}, and click \"Download PDF\"."),
    "refund": (["I'd like a refund for invoice {inv}.", "Can I get my money back for invoice {inv}?"],
               "I'm sorry the service didn't meet your needs. I have opened refund request {ticket} for "
               "invoice {inv}, and our billing team will review it within two business days.",
               "How long will the refund take?",
               "Once approved, refunds usually appear on your statement within 5 to 10 business days. "
               "We will email you when it has been processed."),
    "outage": (["Is Acme Cloud down? My servers in {region} are not responding.",
                "My app in the {region} region stopped working. Is there an outage?"],
               "I'm sorry for the disruption. We are aware of an issue affecting some servers in {region}, "
               "and our engineers are working on a fix. You can follow live updates on the Acme Cloud status page.",
               "When will it be fixed?",
               "We don't have an exact time yet, but we post an update every 30 minutes. Thank you for your patience."),
    "upgrade": (["How do I upgrade to the {plan} plan?", "I want to switch to the {plan} plan. What should I do?"],
                "Happy to help! Open the Acme Cloud console, go to Billing > Plans, choose {plan}, and confirm. "
                "The change takes effect immediately.",
                "Will I lose any data when I upgrade?",
                "No, changing your plan does not affect your data or your running services."),
    "delete": (["How can I delete my Acme Cloud account?", "Please tell me how to close my account."],
               "We're sorry to see you go. Go to Settings > Account, click \"Delete account\", and confirm by email. "
               "Please download any data you want to keep first, because deletion is permanent.",
               "Can I undo it later?",
               "Unfortunately not. Once the deletion is confirmed, your account and data cannot be restored."),
}
REGIONS = ["Frankfurt", "Virginia", "Singapore", "São Paulo", "Tokyo", "Paris", "Oregon"]


def gen_support(rng, n, use_think):
    topics = rng.sample(list(SUPPORT), 2)
    name = rng.choice(NAMES)
    fill = dict(email=f"{name.lower()}@example.com",
                amt=f"{rng.randint(5, 300)}.{rng.randint(0, 99):02d}", inv=f"INV-{rng.randint(1000, 9999)}",
                ticket=f"R-{rng.randint(10000, 99999)}", region=rng.choice(REGIONS),
                plan=rng.choice(["Pro", "Team", "Business"]))
    script = []
    for i, t in enumerate(topics):
        firsts, answer, follow_q, follow_a = SUPPORT[t]
        q = rng.choice(firsts)
        q = (rng.choice(["", "Hi! ", "Hello. ", "Good morning. "]) if i == 0 else "One more question: ") + q
        script += [(q.format(**fill), answer.format(**fill)), (follow_q, follow_a.format(**fill))]
    out = script[:n]
    if n > 1 and rng.random() < 0.3:
        out[-1] = (rng.choice(THANKS), "You're welcome! If anything else comes up, just reply to this chat.")
    return out


# -------------------------------------------------------------------- how-to
HOWTO = {
    "boil an egg": (["Place the egg in a small pot and cover it with cold water.",
                     "Bring the water to a boil over medium-high heat.",
                     "Lower the heat and simmer for 9 to 12 minutes for a hard-boiled egg.",
                     "Move the egg to cold water, then peel it once it has cooled."],
                    "Cover the egg with water, boil, simmer about 10 minutes, then cool and peel."),
    "make a cup of tea": (["Boil fresh water.", "Put a tea bag in your cup.",
                           "Pour the hot water over the tea bag.",
                           "Let it steep for 3 to 5 minutes, then remove the bag.",
                           "Add milk, sugar, or lemon if you like."],
                          "Pour boiling water over a tea bag, steep 3 to 5 minutes, and add extras to taste."),
    "restart a home router": (["Unplug the router from the power outlet.", "Wait about 30 seconds.",
                               "Plug it back in and wait until the lights are steady.",
                               "Reconnect your device to the Wi-Fi network."],
                              "Unplug it, wait 30 seconds, plug it back in, and reconnect."),
    "plant a seed in a pot": (["Fill a small pot with moist potting soil.",
                               "Make a hole about twice as deep as the seed is wide.",
                               "Drop the seed in and cover it lightly with soil.",
                               "Water gently and place the pot in a warm, bright spot."],
                              "Sow the seed shallowly in moist soil, water it, and keep it warm and bright."),
    "wash your hands properly": (["Wet your hands with clean running water.",
                                  "Apply soap and rub your hands together.",
                                  "Scrub every surface, including between your fingers, for at least 20 seconds.",
                                  "Rinse well and dry with a clean towel."],
                                 "Wet, soap, scrub for 20 seconds, rinse, and dry."),
    "create a Python virtual environment": (["Open a terminal in your project folder.",
                                             "Run python -m venv .venv to create the environment.",
                                             "Activate it with source .venv/bin/activate on macOS or Linux.",
                                             "Install packages with pip install as usual."],
                                            "Run python -m venv .venv, activate it, then pip install what you need."),
    "make a paper airplane": (["Fold a sheet of paper in half lengthwise, then unfold it.",
                               "Fold the top two corners down to the center crease.",
                               "Fold the new slanted edges to the center crease again.",
                               "Fold the plane in half along the original crease.",
                               "Fold each wing down so its edge lines up with the bottom of the body."],
                              "Fold the corners to the center twice, fold in half, and fold down the wings."),
    "write a clear email subject line": (["Decide the one main point of your email.",
                                          "Put the most important words first.",
                                          "Keep it under about eight words.",
                                          "Add a deadline if one is needed, such as \"Reply by Friday\"."],
                                         "State the main point first in a few words, plus any deadline."),
    "clean a laptop keyboard": (["Turn off the laptop and unplug it.",
                                 "Turn it upside down and gently tap out loose crumbs.",
                                 "Use compressed air between the keys.",
                                 "Wipe the keys with a soft cloth lightly dampened with isopropyl alcohol."],
                                "Power off, shake out crumbs, blow air between keys, and wipe with a damp cloth."),
    "cook plain white rice": (["Rinse 1 cup of rice until the water runs mostly clear.",
                               "Put the rice and 2 cups of water in a pot and bring it to a boil.",
                               "Cover, lower the heat, and simmer for about 18 minutes.",
                               "Let it rest covered for 5 minutes, then fluff it with a fork."],
                              "Rinse the rice, boil it in twice as much water, simmer covered, then rest and fluff."),
    "start a daily reading habit": (["Choose a book you really want to read.",
                                     "Pick a fixed time, such as right before bed.",
                                     "Start small with 10 minutes a day.",
                                     "Keep the book somewhere you will see it."],
                                    "Read a book you enjoy for 10 minutes at the same time every day."),
    "save a file in a text editor": (["Click File in the menu bar.",
                                      "Choose Save, or press Ctrl+S (Cmd+S on a Mac).",
                                      "Pick a folder and type a file name.", "Click Save to confirm."],
                                     "Press Ctrl+S, choose a folder and a name, and click Save."),
}
HOWTO_Q = ["How do I {t}?", "Give me the steps to {t}.", "What are the steps to {t}?",
           "Can you explain how to {t}?"]
HOWTO_INTRO = ["Here is how to {t}:", "Sure! Follow these steps:", "Here are the steps:"]
SHORTER_Q = ["Can you make it shorter?", "Can you put that in one sentence?", "Shorter, please."]


def gen_howto(rng, n, use_think):
    tasks = iter(rng.sample(list(HOWTO), 4))
    state = {"t": next(tasks)}

    def steps_answer(t):
        steps, _ = HOWTO[t]
        body = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        return rng.choice(HOWTO_INTRO).format(t=t) + "\n" + body

    def turn(first):
        if first:
            return rng.choice(HOWTO_Q).format(t=state["t"]), steps_answer(state["t"])
        if not state.get("short") and rng.random() < 0.5:  # each list is shortened at most once
            state["short"] = True
            return rng.choice(SHORTER_Q), "In short: " + HOWTO[state["t"]][1]
        state["t"], state["short"] = next(tasks), False
        return "And how do I " + state["t"] + "?", steps_answer(state["t"])
    return chain(rng, n, turn)


# -------------------------------------------------------- synonyms/antonyms
# word, synonym, antonym
LEXICON = [
    ("happy", "joyful", "sad"), ("big", "large", "small"), ("fast", "quick", "slow"),
    ("cold", "chilly", "hot"), ("begin", "start", "finish"), ("brave", "courageous", "cowardly"),
    ("easy", "simple", "difficult"), ("rich", "wealthy", "poor"), ("quiet", "silent", "loud"),
    ("smart", "clever", "foolish"), ("strong", "powerful", "weak"), ("angry", "furious", "calm"),
    ("tired", "exhausted", "rested"), ("wet", "damp", "dry"), ("clean", "spotless", "dirty"),
    ("kind", "gentle", "cruel"), ("near", "close", "far"), ("buy", "purchase", "sell"),
    ("rude", "impolite", "polite"), ("accept", "receive", "reject"), ("increase", "raise", "decrease"),
    ("hide", "conceal", "reveal"), ("win", "triumph", "lose"), ("old", "elderly", "young"),
    ("bright", "shiny", "dim"), ("full", "packed", "empty"), ("hard", "firm", "soft"),
]
SYN_Q = ["What is a synonym for '{w}'?", "Give me another word for '{w}'.",
         "What's a word that means the same as '{w}'?"]
ANT_Q = ["What is the opposite of '{w}'?", "Give me an antonym for '{w}'.",
         "What word means the opposite of '{w}'?"]


def gen_synonyms(rng, n, use_think):
    entries = iter(rng.sample(LEXICON, n))
    state = {"kind": rng.choice(["syn", "ant"]), "e": None}

    def answer(kind, e):
        w, s, a = e
        if kind == "syn":
            return f"One word that means the same as '{w}' is '{s}'."
        return f"The opposite of '{w}' is '{a}'; the two words are antonyms."

    def turn(first):
        if first or rng.random() < 0.6 or state.get("both"):
            state["e"] = next(entries)
            state["both"] = False
            q = rng.choice(SYN_Q if state["kind"] == "syn" else ANT_Q).format(w=state["e"][0])
            if not first:
                q = rng.choice(["What about '{w}'?", "And for '{w}'?", q]).format(w=state["e"][0])
            return q, answer(state["kind"], state["e"])
        other = "ant" if state["kind"] == "syn" else "syn"
        state["both"] = True
        return rng.choice(["And an antonym?", "And its opposite?"] if other == "ant"
                          else ["And a synonym?", "And a word with the same meaning?"]), answer(other, state["e"])
    return chain(rng, n, turn)


# ------------------------------------------------------------------- sorting
SORT_WORDS = ("apple banana cherry grape lemon mango peach pear plum kiwi tiger zebra horse eagle "
              "otter panda camel whale rabbit falcon lizard moose").split()


def gen_sorting(rng, n, use_think):
    state = {}

    def new_list(first):
        words = rng.random() < 0.4
        k = rng.randint(4, 6 if words else 7)
        items = rng.sample(SORT_WORDS, k) if words else [str(x) for x in rng.sample(range(1, 100), k)]
        desc = not words and rng.random() < 0.3
        state.update(items=items, words=words)
        shown = ", ".join(items)
        if words:
            q = rng.choice(["Sort these words alphabetically: {l}.", "Put these words in alphabetical order: {l}."])
            srt = sorted(items)
            steps = [f"Words: {shown}.", "Compare them letter by letter: " + " < ".join(srt) + "."]
            ans = "In alphabetical order: " + ", ".join(srt) + "."
        elif desc:
            q = rng.choice(["Order these numbers from largest to smallest: {l}.", "Sort in descending order: {l}."])
            srt = sorted(items, key=int, reverse=True)
            steps = [f"Numbers: {shown}.", "Largest first: " + " > ".join(srt) + "."]
            ans = "From largest to smallest: " + ", ".join(srt) + "."
        else:
            q = rng.choice(["Sort these numbers from smallest to largest: {l}.",
                            "Put these numbers in ascending order: {l}."])
            srt = sorted(items, key=int)
            steps = [f"Numbers: {shown}.", "Smallest first: " + " < ".join(srt) + "."]
            ans = "From smallest to largest: " + ", ".join(srt) + "."
        state["sorted"] = srt
        if not first:
            q = rng.choice(["Now sort these: {l}.", q])
        return q.format(l=shown), maybe_think(use_think, steps, ans)

    def turn(first):
        if first or rng.random() < 0.4:
            return new_list(first)
        srt, words = state["sorted"], state["words"]
        if rng.random() < 0.5:
            state["sorted"] = srt = srt[::-1]
            return "Now reverse that order.", "Reversed: " + ", ".join(srt) + "."
        if words:
            return "Which word comes first alphabetically?", f"'{min(srt)}' comes first alphabetically."
        return "Which one is the largest?", f"The largest number is {max(srt, key=int)}."
    return chain(rng, n, turn)


# ---------------------------------------------------------------- days/dates
def day_shift(use_think, day: int, k: int, forward: bool, q: str) -> tuple[str, str, int]:
    res = (day + k if forward else day - k) % 7
    word = "after" if forward else "before"
    r = k % 7
    steps = [f"{DAYS[day]} is day {day + 1} of the week, counting Monday as day 1."]
    steps.append(f"{k} is a multiple of 7, so the weekday stays the same." if r == 0
                 else f"A week has 7 days, so only {k} mod 7 = {r} matters.")
    if r:
        steps.append(f"{plural(r, 'day')} {word} {DAYS[day]} is {DAYS[res]}.")
    ans = f"{plural(k, 'day')} {word} {DAYS[day]} is {DAYS[res]}, so the answer is {DAYS[res]}."
    return q, maybe_think(use_think, steps, ans), res


def gen_days(rng, n, use_think):
    state = {"mode": rng.choice(["days", "days", "month_after", "month_len"])}

    def turn(first):
        mode = state["mode"]
        if mode == "days":
            k, fwd = rng.randint(1, 20), rng.random() < 0.7
            if first or rng.random() < 0.4:
                day = rng.randrange(7)
                tpl = (["What day comes {k} after {d}?", "If today is {d}, what day will it be in {k}?",
                        "What day is it {k} after {d}?"] if fwd else
                       ["What day was it {k} before {d}?", "If today is {d}, what day was it {k} ago?"])
                q = rng.choice(tpl).format(k=plural(k, "day"), d=DAYS[day])
            else:
                day = state["day"]
                q = f"And {plural(k, 'day')} {'after' if fwd else 'before'} that?"
            q, a, state["day"] = day_shift(use_think, day, k, fwd, q)
            return q, a
        m = rng.randrange(12)
        name, length = MONTHS[m]
        if mode == "month_len":
            q = rng.choice(["How many days are in {m}?", "How many days does {m} have?"] if first
                           else ["And {m}?", "What about {m}?"]).format(m=name)
            a = ("February has 28 days in a common year and 29 in a leap year." if m == 1
                 else f"The month of {name} always has {length} days.")
            steps = [f"{name} is month {m + 1}.", "Months with 31 days: January, March, May, July, "
                     "August, October, December. February has 28 or 29. The rest have 30."]
            return q, maybe_think(use_think, steps, a)
        k = rng.randint(1, 11)
        j = (m + k) % 12
        q = rng.choice(["What month is {k} after {m}?", "If it is {m} now, what month will it be in {k}?"]
                       if first else ["And {k} after {m}?"]).format(k=plural(k, "month"), m=name)
        steps = [f"{name} is month {m + 1}.", f"{m + 1} + {k} = {m + 1 + k}."]
        if m + 1 + k > 12:
            steps.append(f"That passes December, so subtract 12: {m + 1 + k} - 12 = {j + 1}.")
        steps.append(f"Month {j + 1} is {MONTHS[j][0]}.")
        res = MONTHS[j][0]
        return q, maybe_think(use_think, steps, f"{plural(k, 'month')} after {name} is {res}, so the answer is {res}.")
    return chain(rng, n, turn)


# ---------------------------------------------------------------- small talk
OPENERS = [
    ("Hi!", "Hello! It's nice to hear from you. How can I help you today?"),
    ("Hello there!", "Hi there! I'm happy to chat. What's on your mind today?"),
    ("Good morning!", "Good morning! I hope your day is off to a great start. What can I do for you?"),
    ("Good evening!", "Good evening! I hope you had a nice day. How can I help?"),
    ("Hey, how's it going?", "It's going well, thanks for asking! How about you? Anything fun happening today?"),
    ("Hi, how are you today?", "I'm doing well, thank you! How are you feeling today?"),
]
FEELINGS = {
    "good": (["great", "happy", "excited", "relaxed"],
             "That's wonderful to hear! I'm glad you're feeling {f}. What made your day so good?"),
    "tired": (["tired", "sleepy", "worn out"],
              "Sorry to hear you're feeling {f}. A short break, a glass of water, and some fresh air can help."),
    "stressed": (["stressed", "nervous", "overwhelmed"],
                 "That sounds tough. Try breaking your work into small steps and take them one at a time. You've got this!"),
}
ACTIVITIES = ["visit my grandparents", "go hiking", "bake some bread", "watch a movie", "paint my room",
              "try a new café", "go to the beach", "read a good book", "learn to juggle"]
FACTS = ["Octopuses have three hearts.", "A day on Venus is longer than a year on Venus.",
         "Bananas are berries, but strawberries are not, at least in botanical terms.",
         "Sharks have been around longer than trees.", "Wombats produce cube-shaped droppings.",
         "Honey can stay edible for a very long time if it is kept sealed.",
         "A group of flamingos is called a flamboyance."]
GOODBYES = (["Thanks for chatting, bye!", "I have to go now. Goodbye!", "Talk to you later!",
             "Thanks, that was nice. Bye!"],
            ["Goodbye! Have a wonderful rest of your day.", "It was nice chatting with you. Take care!",
             "Bye for now! I'm here whenever you want to talk again."])


def gen_smalltalk(rng, n, use_think):
    facts = iter(rng.sample(FACTS, 4))

    def feeling():
        kind = rng.choice(list(FEELINGS))
        words, reply = FEELINGS[kind]
        f = rng.choice(words)
        q = rng.choice(["I'm feeling {f} today.", "Today I feel {f}.", "I feel pretty {f} right now."])
        return q.format(f=f), reply.format(f=f)

    def plans():
        q = rng.choice(["This weekend I'm going to {a}.", "I'm planning to {a} on Saturday.",
                        "Tomorrow I want to {a}."]).format(a=rng.choice(ACTIVITIES))
        adj = rng.choice(["lovely", "fun", "great", "relaxing"])
        return q, rng.choice([f"That sounds {adj}! I hope you enjoy it and have a great time.",
                              f"What a {adj} plan! Let me know how it goes."])

    def fact():
        return (rng.choice(["Tell me a fun fact.", "Do you know any fun facts?", "Share something interesting with me."]),
                rng.choice(["Sure! ", "Here's one: "]) + next(facts))

    def rainy():
        return (rng.choice(["What should I do on a rainy day?", "Any ideas for a rainy afternoon?"]),
                "You could read a book, try a new recipe, watch a film, or do a puzzle. A cozy day indoors can be really nice.")

    middles = rng.sample([feeling, plans, fact, rainy], 4)  # each topic at most once
    if n == 1:
        return [rng.choice(middles + [lambda: rng.choice(OPENERS)])()]
    out = [rng.choice(OPENERS) if rng.random() < 0.7 else middles.pop()()]
    for i in range(1, n):
        if i == n - 1 and rng.random() < 0.6:
            out.append((rng.choice(GOODBYES[0]), rng.choice(GOODBYES[1])))
        elif out[-1][0] in {"Tell me a fun fact.", "Do you know any fun facts?",
                            "Share something interesting with me.", "Another one, please!"} and rng.random() < 0.6:
            out.append(("Another one, please!", "Of course! " + next(facts)))
        else:
            out.append(middles.pop()())
    return out


# ----------------------------------------------------------------- summarize
# (text, one-sentence summary, shorter version, title)
STORIES = [
    ("{name} started learning the {inst} in {month}. After weeks of practice every evening, {name} played a "
     "first full song for the family.",
     "{name} practiced the {inst} every evening from {month} and eventually played a full song for the family.",
     "{name} learned to play a song on the {inst}.", "Learning the {Inst}"),
    ("The town of {town} opened a new public library on {day}. The building has a quiet reading room for "
     "children and a small café on the ground floor.",
     "{town} opened a new library on {day} with a children's reading room and a café.",
     "{town} has a new library.", "New Library Opens in {town}"),
    ("Our team released version {v} of the {app} app this week. The update fixes several login bugs and "
     "makes the app start about {p} percent faster.",
     "Version {v} of the {app} app fixes login bugs and starts about {p} percent faster.",
     "{app} {v} is faster and fixes bugs.", "{app} {v} Released"),
    ("Heavy rain fell on {city} for most of {day}. Several streets near the river were flooded, and many "
     "buses ran more than {k} minutes late.",
     "Heavy rain in {city} on {day} flooded streets near the river and delayed buses.",
     "Rain flooded parts of {city}.", "Flooding in {city}"),
    ("{name} ran a {k}-kilometer charity race last {day}. The race raised money for new books at a local "
     "school, and {name} finished in the top ten.",
     "{name} finished in the top ten of a {k}-kilometer charity race that raised money for school books.",
     "{name} ran a charity race for a school.", "Running for School Books"),
    ("The bakery on {street} Street has started selling {food}. The owner says it took {k} months to get "
     "the recipe just right.",
     "After {k} months of work on the recipe, the bakery on {street} Street now sells {food}.",
     "A local bakery now sells {food}.", "New {Food} on {street} Street"),
    ("The {team} team met on {day} to plan the next release. They agreed to finish testing by the end of "
     "{month} and ship soon after.",
     "The {team} team plans to finish testing by the end of {month} and then ship the release.",
     "The {team} team set a release plan.", "{team} Release Plan"),
]
SUM_Q = ["Summarize this in one sentence: {t}", "Please give me a one-sentence summary of this text:\n\n{t}",
         "Can you sum this up in one sentence? {t}", "Summarize:\n{t}"]


def story(rng):
    f = dict(name=rng.choice(NAMES), inst=rng.choice(["piano", "guitar", "violin", "flute", "drums"]),
             month=rng.choice(MONTHS)[0], town=rng.choice(["Millbrook", "Ashford", "Riverton", "Eastvale",
                                                           "Stonebridge"]),
             day=rng.choice(DAYS), v=f"{rng.randint(1, 5)}.{rng.randint(0, 9)}",
             app=rng.choice(["Notely", "TrailMap", "BudgetBee", "FitTrack"]), p=rng.choice([10, 20, 30, 40]),
             city=rng.choice(CITIES), k=rng.choice([5, 10, 15, 20]),
             street=rng.choice(["Maple", "Oak", "Mill", "Church", "Market"]),
             food=rng.choice(["sourdough bread", "cinnamon rolls", "lemon tarts", "rye bread", "apple pie"]),
             team=rng.choice(["design", "mobile", "data", "platform"]))
    f["Inst"], f["Food"] = f["inst"].title(), f["food"].title()
    return [s.format(**f) for s in rng.choice(STORIES)]


def gen_summarize(rng, n, use_think):
    state = {}

    def turn(first):
        todo = state.get("todo", [])  # follow-ups not yet asked about the current text
        if first or not todo or rng.random() < 0.25:
            state["s"], state["todo"] = story(rng), ["shorter", "title"]
            q = rng.choice(SUM_Q if first else ["Summarize this one too: {t}", "Now this one: {t}"])
            return q.format(t=state["s"][0]), state["s"][1]
        kind = rng.choice(todo)
        todo.remove(kind)
        if kind == "shorter":
            return rng.choice(["Can you make it shorter?", "Shorter, please."]), "Shorter version: " + state["s"][2]
        return rng.choice(["Give it a short title.", "Can you suggest a title for it?"]), "Title: " + state["s"][3]
    return chain(rng, n, turn, closer_prob=0.3)


# --------------------------------------------------------------- translation
# English phrase -> (French, Spanish)
PHRASEBOOK = {
    "Good morning": ("Bonjour", "Buenos días"), "Thank you": ("Merci", "Gracias"),
    "Good night": ("Bonne nuit", "Buenas noches"), "Goodbye": ("Au revoir", "Adiós"),
    "Please": ("S'il vous plaît", "Por favor"), "How are you?": ("Comment allez-vous ?", "¿Cómo estás?"),
    "Where is the station?": ("Où est la gare ?", "¿Dónde está la estación?"),
    "I am hungry": ("J'ai faim", "Tengo hambre"), "The cat is black": ("Le chat est noir", "El gato es negro"),
    "See you tomorrow": ("À demain", "Hasta mañana"), "What time is it?": ("Quelle heure est-il ?", "¿Qué hora es?"),
    "I would like a coffee": ("Je voudrais un café", "Quisiera un café"),
    "My name is Anna": ("Je m'appelle Anna", "Me llamo Anna"),
    "Happy birthday": ("Joyeux anniversaire", "Feliz cumpleaños"),
    "The book is on the table": ("Le livre est sur la table", "El libro está sobre la mesa"),
    "I don't understand": ("Je ne comprends pas", "No entiendo"),
}
LANGS = ["French", "Spanish"]
TR_Q = ["How do you say '{p}' in {l}?", "Translate '{p}' into {l}.", "What is '{p}' in {l}?"]
TR_A = ["In {l}, '{p}' is '{t}'.", "The {l} translation of '{p}' is '{t}'."]


def gen_translation(rng, n, use_think):
    phrases = iter(rng.sample(list(PHRASEBOOK), n))
    state = {"p": next(phrases), "l": rng.randrange(2), "langs_done": 1}

    def answer():
        p, l = state["p"], state["l"]
        return rng.choice(TR_A).format(p=p, l=LANGS[l], t=PHRASEBOOK[p][l])

    def turn(first):
        if first:
            return rng.choice(TR_Q).format(p=state["p"], l=LANGS[state["l"]]), answer()
        if state["langs_done"] == 1 and rng.random() < 0.5:
            state["l"], state["langs_done"] = 1 - state["l"], 2
            return rng.choice(["And in {l}?", "How would I say it in {l}?"]).format(l=LANGS[state["l"]]), answer()
        state["p"], state["langs_done"] = next(phrases), 1
        return rng.choice(["How about '{p}'?", "And '{p}'?"]).format(p=state["p"]), answer()
    return chain(rng, n, turn)


# -------------------------------------------------------------- assembly
CATEGORIES = {
    "arithmetic": gen_arithmetic, "unit-conversion": gen_unit_conversion, "word-tools": gen_word_tools,
    "capitals": gen_capitals, "definitions": gen_definitions, "json-formatting": gen_json,
    "support": gen_support, "how-to": gen_howto, "synonyms-antonyms": gen_synonyms,
    "sorting": gen_sorting, "days-dates": gen_days, "small-talk": gen_smalltalk,
    "summarize": gen_summarize, "translation": gen_translation,
}


def system_prompt(rng, cat: str) -> str:
    if cat == "support":
        return rng.choice([ACME_SYSTEM] * 3 + GENERAL_SYSTEM[:3])
    if cat == "json-formatting":
        return rng.choice([JSON_SYSTEM, JSON_SYSTEM, GENERAL_SYSTEM[0], GENERAL_SYSTEM[4]])
    return rng.choice(GENERAL_SYSTEM[:-1] if cat == "how-to" else GENERAL_SYSTEM)


def make_conversation(rng, cat: str, n: int, use_sys: bool, use_think: bool) -> dict:
    msgs = [{"role": "system", "content": system_prompt(rng, cat)}] if use_sys else []
    for user, assistant in CATEGORIES[cat](rng, n, use_think):
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": msgs, "source": cat}


def key(conv: dict) -> str:
    return json.dumps(conv["messages"], ensure_ascii=False, sort_keys=True)


def exchange_plan(total: int) -> list[int]:
    counts = {k: round(p * total) for k, p in EXCHANGE_MIX.items()}
    counts[1] += total - sum(counts.values())
    return [k for k, c in counts.items() for _ in range(c)]


def build_split(total: int, seed: int, forbidden: set[str]) -> list[dict]:
    rng = random.Random(seed)
    names = list(CATEGORIES)
    cats = [names[i % len(names)] for i in range(total)]
    plan = exchange_plan(total)
    n_sys = round(SYSTEM_PROB * total)
    with_sys = [True] * n_sys + [False] * (total - n_sys)
    for lst in (cats, plan, with_sys):
        rng.shuffle(lst)
    seen, out = set(forbidden), []
    for cat, n, use_sys in zip(cats, plan, with_sys):
        use_think = cat in THINK_CATEGORIES and rng.random() < THINK_PROB
        for _ in range(500):
            conv = make_conversation(rng, cat, n, use_sys, use_think)
            if key(conv) not in seen:
                break
        else:
            sys.exit(f"could not make a unique {cat!r} conversation with {n} exchanges")
        seen.add(key(conv))
        out.append(conv)
    return out


def check(splits: dict[str, list[dict]]) -> None:
    """Fail loudly if a conversation breaks the dataset rules: the library's validator, then this generator's own."""
    sys.path.insert(0, str(REPO_ROOT))
    from sft_course.data import validate
    for name, convs in {**splits, "train + test": [c for convs in splits.values() for c in convs]}.items():
        report = validate(convs)
        if not report.ok:
            sys.exit(f"{name}: {len(report.issues)} problems, the first: {report.issues[0]}")
    for name, convs in splits.items():
        for i, conv in enumerate(convs):
            msgs = conv["messages"]
            n = sum(m["role"] == "assistant" for m in msgs)
            if not 1 <= n <= 4 or any(m["content"] != m["content"].strip() for m in msgs):
                sys.exit(f"{name} conversation {i} ({conv['source']}): needs 1-4 exchanges and stripped contents")


def derived_seed(seed: int, split: str) -> int:
    return int(hashlib.sha256(f"sft-course:{seed}:{split}".encode()).hexdigest()[:16], 16)


def render(convs: list[dict]) -> str:
    return "".join(json.dumps(conv, ensure_ascii=False) + "\n" for conv in convs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "sft_course" / "samples",
                    help="output directory (default: <repo>/sft_course/samples)")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing them")
    args = ap.parse_args()

    train = build_split(N_TRAIN, derived_seed(args.seed, "train"), set())
    test = build_split(N_TEST, derived_seed(args.seed, "test"), {key(c) for c in train})
    check({"train": train, "test": test})

    files = {"train.jsonl": render(train), "test.jsonl": render(test)}
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.out / name).exists() or (args.out / name).read_text(encoding="utf-8") != text]
        if stale:
            sys.exit(f"{', '.join(stale)} in {args.out} differ from the generator's output: "
                     "run python tools/make_samples.py and commit the result.")
        print(f"{', '.join(files)} in {args.out} match the generator (seed {args.seed}).")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {text.count(chr(10))} conversations to {args.out / name}")


if __name__ == "__main__":
    main()
