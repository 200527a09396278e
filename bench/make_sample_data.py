"""Write the bundled sample data: posttrain/data/sample_alpaca.jsonl and sample_preference.jsonl.

Every row comes from a template or a small hand-written table in this file, so the
answers are computed (arithmetic, conversions, string tasks, JSON extraction) or written
here (definitions, rewrites), never copied from an existing dataset. The output is
byte-for-byte deterministic for a given --seed; tests regenerate it and compare.

    python bench/make_sample_data.py            # rewrite the bundled files
    python bench/make_sample_data.py --out-dir /tmp/samples
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

SEED = 1234
ALPACA_FILE = "sample_alpaca.jsonl"
PREFERENCE_FILE = "sample_preference.jsonl"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "posttrain" / "data"
PREFERENCE_ROWS = 180


@dataclass(frozen=True)
class Example:
    instruction: str
    input: str
    output: str
    wrong: str  # a plausible but incorrect or badly formatted answer, for preference pairs


# --------------------------------------------------------------------------- tables

NAMES = [
    "Maya",
    "Liam",
    "Aisha",
    "Noah",
    "Sofia",
    "Kenji",
    "Priya",
    "Omar",
    "Elena",
    "Mateo",
    "Zara",
    "Lucas",
]
ITEMS = [
    "apples",
    "pencils",
    "marbles",
    "cookies",
    "stickers",
    "books",
    "oranges",
    "cards",
    "stamps",
    "shells",
]

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "China": "Beijing",
    "India": "New Delhi",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Brazil": "Brasília",
    "Argentina": "Buenos Aires",
    "Mexico": "Mexico City",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Nigeria": "Abuja",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Turkey": "Ankara",
    "South Korea": "Seoul",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Peru": "Lima",
    "Colombia": "Bogotá",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Hungary": "Budapest",
    "New Zealand": "Wellington",
    "Morocco": "Rabat",
    "Ghana": "Accra",
    "Ethiopia": "Addis Ababa",
}

ELEMENTS = {
    "hydrogen": "H",
    "helium": "He",
    "carbon": "C",
    "nitrogen": "N",
    "oxygen": "O",
    "sodium": "Na",
    "potassium": "K",
    "iron": "Fe",
    "gold": "Au",
    "silver": "Ag",
    "copper": "Cu",
    "lead": "Pb",
    "mercury": "Hg",
    "tin": "Sn",
    "calcium": "Ca",
    "chlorine": "Cl",
    "neon": "Ne",
    "zinc": "Zn",
}

PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]

WORDS = [
    "planet", "garden", "rocket", "window", "silver", "puzzle", "lantern", "harbor", "meadow", "falcon",
    "blanket", "cactus", "tunnel", "pepper", "marble", "orchard", "compass", "thunder", "violin", "pocket",
    "mississippi", "banana", "balloon", "coffee", "letter", "committee", "bookkeeper", "assessment",
    "tomorrow", "parallel", "engineer", "giraffe", "pineapple", "strawberry", "notebook", "keyboard",
]  # fmt: skip

PALINDROMES = ["level", "radar", "kayak", "civic", "rotor", "noon", "refer", "madam", "stats", "racecar"]

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "small models can still learn useful skills",
    "please remember to water the plants on friday",
    "the train to the coast leaves at seven",
    "every good experiment starts with a clear question",
    "our team finished the project two days early",
    "rain is expected across the north this weekend",
    "she planted tomatoes and basil in the spring",
    "the library opens at nine on saturdays",
    "learning a new language takes time and practice",
    "he fixed the bicycle with a borrowed wrench",
    "the museum added a new room for ancient maps",
]

FRUITS = [
    "pear", "apple", "fig", "mango", "cherry", "banana", "kiwi", "grape", "lemon", "plum", "peach", "melon",
    "apricot", "lime", "papaya", "guava", "date", "olive",
]  # fmt: skip

ML_TERMS = {
    "overfitting": "Overfitting is when a model learns the training data too closely, including its noise, "
    "so it scores well on training examples but poorly on new, unseen data.",
    "underfitting": "Underfitting is when a model is too simple or trained too little to capture the "
    "patterns in the data, so it performs poorly even on the training set.",
    "the learning rate": "The learning rate is the step size an optimizer uses when it updates the model's "
    "weights. Too high a value makes training unstable; too low a value makes it slow.",
    "gradient descent": "Gradient descent is an optimization method that repeatedly moves the model's "
    "parameters a small step in the direction that most reduces the loss, given by the negative gradient.",
    "backpropagation": "Backpropagation computes the gradient of the loss with respect to every weight in a "
    "neural network by applying the chain rule backward from the output layer to the input.",
    "an epoch": "An epoch is one full pass of the training algorithm over the entire training dataset.",
    "batch size": "Batch size is the number of training examples processed together before the model's "
    "weights are updated once.",
    "a loss function": "A loss function measures how far a model's predictions are from the correct targets. "
    "Training adjusts the weights to make this number smaller.",
    "dropout": "Dropout is a regularization technique that randomly sets a fraction of a layer's activations "
    "to zero during training, which stops the network from relying on any single unit.",
    "regularization": "Regularization is any technique that discourages a model from becoming too complex, "
    "such as weight decay or dropout, in order to reduce overfitting.",
    "a validation set": "A validation set is data held out from training and used to tune hyperparameters "
    "and detect overfitting, without touching the final test set.",
    "a tokenizer": "A tokenizer splits text into tokens, such as words or subword pieces, and maps each "
    "token to an integer ID that a language model can process.",
    "an embedding": "An embedding is a dense vector of numbers that represents an item such as a word or "
    "token, arranged so that similar items have nearby vectors.",
    "attention": "Attention is a mechanism that lets a model weigh how relevant each position of the input "
    "is when it computes the representation of another position.",
    "a transformer": "A transformer is a neural network architecture built from self-attention and "
    "feed-forward layers. It processes all positions of a sequence in parallel and underlies most modern "
    "language models.",
    "fine-tuning": "Fine-tuning is continuing to train a pretrained model on a smaller, task-specific "
    "dataset so that it adapts to that task.",
    "LoRA": "LoRA (Low-Rank Adaptation) fine-tunes a large model by freezing its original weights and "
    "training small low-rank matrices added to selected layers, which greatly reduces the number of "
    "trainable parameters.",
    "supervised fine-tuning": "Supervised fine-tuning (SFT) trains a pretrained language model on example "
    "prompts paired with desired responses, which teaches it to follow instructions.",
    "Direct Preference Optimization": "Direct Preference Optimization (DPO) trains a language model on "
    "pairs of preferred and rejected responses, raising the likelihood of the preferred one relative "
    "to a reference model without training a separate reward model.",
    "RLHF": "Reinforcement learning from human feedback (RLHF) trains a reward model on human preference "
    "judgments and then optimizes a language model with reinforcement learning to maximize that reward.",
    "a reward model": "A reward model is a model trained to score responses, usually from human preference "
    "comparisons, so that its score can guide reinforcement learning.",
    "perplexity": "Perplexity measures how well a language model predicts text. It is the exponential of the "
    "average negative log-likelihood per token, so lower values are better.",
    "the softmax function": "Softmax turns a vector of real numbers into a probability distribution by "
    "exponentiating each value and dividing by the sum of all the exponentials.",
    "KL divergence": "KL divergence measures how one probability distribution differs from a reference "
    "distribution. It is zero when the two are identical, and it is not symmetric.",
    "quantization": "Quantization stores a model's weights or activations with fewer bits, for example 8-bit "
    "integers instead of 32-bit floats, to cut memory use and speed up inference.",
    "sampling temperature": "Sampling temperature rescales a model's logits before the softmax. Lower "
    "temperatures make outputs more deterministic, while higher temperatures make them more varied.",
    "cross-entropy loss": "Cross-entropy loss compares predicted probabilities with the true labels; for "
    "classification it is the negative log of the probability the model assigns to the correct class.",
    "a hyperparameter": "A hyperparameter is a setting chosen before training rather than learned from data, "
    "such as the learning rate, the batch size or the number of layers.",
    "precision": "Precision is the fraction of items a model labels positive that really are positive: true "
    "positives divided by true positives plus false positives.",
    "recall": "Recall is the fraction of truly positive items that a model finds: true positives divided by "
    "true positives plus false negatives.",
    "gradient clipping": "Gradient clipping limits the size of gradients during training, for example by "
    "rescaling them when their norm exceeds a threshold, to prevent unstable updates.",
}

FORMAL = [
    (
        "hey, can u send me the report asap?",
        "Could you please send me the report at your earliest convenience?",
    ),
    ("we gotta fix this bug before friday.", "We need to fix this bug before Friday."),
    (
        "thanks a ton for the help, really appreciate it!",
        "Thank you very much for your help; I truly appreciate it.",
    ),
    ("the meeting got pushed to next week.", "The meeting has been postponed until next week."),
    (
        "i can't make it today, something came up.",
        "I am unable to attend today because something unexpected has come up.",
    ),
    ("this plan is kinda confusing.", "This plan is somewhat unclear."),
    ("lemme know if you need anything else.", "Please let me know if you require anything further."),
    (
        "sorry for the late reply, been swamped.",
        "I apologize for the delayed response; I have been extremely busy.",
    ),
    ("the numbers look way off.", "The figures appear to be significantly inaccurate."),
    ("can we chat about the budget tomorrow?", "Could we discuss the budget tomorrow?"),
    ("the new guy is doing a great job.", "The new employee is performing very well."),
    ("don't forget to bring your laptop.", "Please remember to bring your laptop."),
    ("we're out of coffee again.", "We have run out of coffee once again."),
    ("the server crashed, no idea why.", "The server failed, and the cause is currently unknown."),
    ("gimme a sec to check.", "Please allow me a moment to check."),
    ("that idea is awesome, let's do it!", "That is an excellent idea; let us proceed with it."),
    ("they want the stuff done by monday.", "They would like the work completed by Monday."),
    ("i think the price is too high.", "In my view, the price is excessive."),
    ("the printer's broken again.", "The printer is out of order once again."),
    (
        "wanna grab lunch and go over the slides?",
        "Would you like to have lunch and review the slides together?",
    ),
    ("the client's super mad about the delay.", "The client is very displeased about the delay."),
    ("just checking if you saw my email.", "I am writing to confirm whether you received my email."),
]

REVIEWS = [
    ("The battery lasts all day and the screen is gorgeous.", "positive"),
    ("Friendly staff, fast service and the pasta was delicious.", "positive"),
    ("I finished this book in one night; I could not put it down.", "positive"),
    ("Setup took two minutes and everything worked the first time.", "positive"),
    ("The hotel room was spotless and the view was stunning.", "positive"),
    ("Great value for the price, I would buy it again.", "positive"),
    ("The concert was unforgettable and the sound was perfect.", "positive"),
    ("My package arrived early and was carefully packed.", "positive"),
    ("The course explained hard topics clearly and patiently.", "positive"),
    ("These headphones stay comfortable even after hours of use.", "positive"),
    ("The support team solved my problem within an hour.", "positive"),
    ("A charming film with a clever script and warm performances.", "positive"),
    ("The app crashes every time I try to upload a photo.", "negative"),
    ("Cold food, rude waiter, and we waited forty minutes.", "negative"),
    ("The shoes fell apart after two weeks of light use.", "negative"),
    ("Customer service never answered any of my emails.", "negative"),
    ("The plot was predictable and the ending made no sense.", "negative"),
    ("The room smelled of smoke and the shower was broken.", "negative"),
    ("It stopped charging after a month and the refund was refused.", "negative"),
    ("Far too expensive for such poor quality.", "negative"),
    ("The instructions were missing and two parts were damaged.", "negative"),
    ("The noise from the fan makes it impossible to concentrate.", "negative"),
    ("The delivery was a week late and the box was crushed.", "negative"),
    ("A dull, overlong movie with flat characters.", "negative"),
]

PLURALS = {
    "child": "children", "mouse": "mice", "goose": "geese", "man": "men", "woman": "women",
    "tooth": "teeth", "foot": "feet", "person": "people", "ox": "oxen", "leaf": "leaves",
    "knife": "knives", "wolf": "wolves", "sheep": "sheep", "deer": "deer", "phenomenon": "phenomena",
    "criterion": "criteria", "analysis": "analyses", "crisis": "crises",
}  # fmt: skip

ANTONYMS = {
    "hot": "cold", "ancient": "modern", "increase": "decrease", "accept": "reject", "brave": "cowardly",
    "arrive": "depart", "visible": "invisible", "maximum": "minimum", "victory": "defeat",
    "external": "internal", "rough": "smooth", "empty": "full", "generous": "selfish", "expand": "shrink",
    "early": "late", "heavy": "light",
}  # fmt: skip

PAST_TENSE = {
    "go": "went", "eat": "ate", "write": "wrote", "swim": "swam", "bring": "brought", "think": "thought",
    "teach": "taught", "catch": "caught", "fly": "flew", "begin": "began", "drive": "drove",
    "speak": "spoke", "choose": "chose", "freeze": "froze", "buy": "bought", "sing": "sang",
}  # fmt: skip

ACRONYMS = {
    "CPU": "Central Processing Unit",
    "GPU": "Graphics Processing Unit",
    "RAM": "Random Access Memory",
    "HTTP": "Hypertext Transfer Protocol",
    "JSON": "JavaScript Object Notation",
    "API": "Application Programming Interface",
    "URL": "Uniform Resource Locator",
    "SQL": "Structured Query Language",
    "LLM": "large language model",
    "NLP": "natural language processing",
    "CSV": "comma-separated values",
    "HTML": "HyperText Markup Language",
    "USB": "Universal Serial Bus",
    "PDF": "Portable Document Format",
    "SFT": "supervised fine-tuning",
    "LoRA": "Low-Rank Adaptation",
}

ANIMALS = {
    "dolphin": "mammal", "bat": "mammal", "whale": "mammal", "kangaroo": "mammal", "penguin": "bird",
    "ostrich": "bird", "eagle": "bird", "owl": "bird", "crocodile": "reptile", "turtle": "reptile",
    "snake": "reptile", "lizard": "reptile", "salmon": "fish", "shark": "fish", "tuna": "fish",
    "frog": "amphibian", "salamander": "amphibian", "toad": "amphibian",
}  # fmt: skip
CLASS_FACTS = {
    "mammal": "Mammals are warm-blooded and feed their young with milk.",
    "bird": "Birds have feathers and lay eggs with hard shells.",
    "reptile": "Reptiles are cold-blooded and have scaly skin.",
    "fish": "Fish live in water and breathe through gills.",
    "amphibian": "Amphibians usually start life in water and later live on land.",
}

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
]  # fmt: skip
JOBS = ["nurse", "teacher", "pilot", "chef", "data analyst", "carpenter", "architect", "librarian"]
CITIES = ["Lisbon", "Osaka", "Nairobi", "Toronto", "Lyon", "Porto", "Denver", "Melbourne", "Krakow", "Lima"]

# (instruction, correct code, buggy code, explanation, check on the correct function)
CODE = [
    (
        "is_even",
        "Write a Python function `is_even(n)` that returns True when n is even.",
        "def is_even(n):\n    return n % 2 == 0",
        "def is_even(n):\n    return n % 2 == 1",
        "The remainder of an even number divided by 2 is 0.",
        lambda f: f(4) and not f(7),
    ),
    (
        "factorial",
        "Write a Python function `factorial(n)` that returns n! for n >= 0 using a loop.",
        "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n"
        "        result *= i\n    return result",
        "def factorial(n):\n    result = 1\n    for i in range(2, n):\n        result *= i\n"
        "    return result",
        "The loop multiplies every integer from 2 up to n; 0! and 1! stay 1.",
        lambda f: f(0) == 1 and f(5) == 120,
    ),
    (
        "reverse_string",
        "Write a Python function `reverse_string(s)` that returns s reversed.",
        "def reverse_string(s):\n    return s[::-1]",
        "def reverse_string(s):\n    return s[1:]",
        "A slice with step -1 walks the string from the end to the start.",
        lambda f: f("abc") == "cba",
    ),
    (
        "count_vowels",
        "Write a Python function `count_vowels(s)` that counts the vowels in a string.",
        'def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in "aeiou")',
        'def count_vowels(s):\n    return len([ch for ch in s if ch not in "aeiou"])',
        "Lowercasing first makes uppercase vowels count too.",
        lambda f: f("Apple pie") == 4,
    ),
    (
        "largest",
        "Write a Python function `largest(numbers)` that returns the largest number in a non-empty "
        "list without using max().",
        "def largest(numbers):\n    best = numbers[0]\n    for x in numbers[1:]:\n        if x > best:\n"
        "            best = x\n    return best",
        "def largest(numbers):\n    best = 0\n    for x in numbers:\n        if x > best:\n"
        "            best = x\n    return best",
        "Starting from the first element keeps it correct for lists of negative numbers.",
        lambda f: f([-5, -2, -9]) == -2 and f([3, 8, 1]) == 8,
    ),
    (
        "celsius_to_fahrenheit",
        "Write a Python function `celsius_to_fahrenheit(c)` that converts Celsius to Fahrenheit.",
        "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32",
        "def celsius_to_fahrenheit(c):\n    return (c + 32) * 9 / 5",
        "It applies F = C × 9/5 + 32.",
        lambda f: f(100) == 212 and f(0) == 32,
    ),
    (
        "is_palindrome",
        "Write a Python function `is_palindrome(s)` that checks whether a string reads the same backwards.",
        "def is_palindrome(s):\n    return s == s[::-1]",
        "def is_palindrome(s):\n    return s == s[::1]",
        "It compares the string with its reverse.",
        lambda f: f("level") and not f("levels"),
    ),
    (
        "total",
        "Write a Python function `total(numbers)` that adds up a list of numbers with a loop.",
        "def total(numbers):\n    result = 0\n    for x in numbers:\n        result += x\n    return result",
        "def total(numbers):\n    result = 0\n    for x in numbers:\n        result = x\n    return result",
        "Each number is added to a running total that starts at 0.",
        lambda f: f([1, 2, 3]) == 6 and f([]) == 0,
    ),
    (
        "fizzbuzz",
        'Write a Python function `fizzbuzz(n)` that returns "Fizz" for multiples of 3, "Buzz" for '
        'multiples of 5, "FizzBuzz" for multiples of both, and otherwise the number as a string.',
        'def fizzbuzz(n):\n    if n % 15 == 0:\n        return "FizzBuzz"\n    if n % 3 == 0:\n'
        '        return "Fizz"\n    if n % 5 == 0:\n        return "Buzz"\n    return str(n)',
        'def fizzbuzz(n):\n    if n % 3 == 0:\n        return "Fizz"\n    if n % 5 == 0:\n'
        '        return "Buzz"\n    if n % 15 == 0:\n        return "FizzBuzz"\n    return str(n)',
        "Multiples of 15 are checked first, so they are not caught by the 3 or 5 branch.",
        lambda f: [f(i) for i in (3, 5, 15, 7)] == ["Fizz", "Buzz", "FizzBuzz", "7"],
    ),
    (
        "word_count",
        "Write a Python function `word_count(sentence)` that returns the number of words.",
        "def word_count(sentence):\n    return len(sentence.split())",
        "def word_count(sentence):\n    return len(sentence)",
        "split() with no argument splits on any run of whitespace.",
        lambda f: f("a  quick fox") == 3,
    ),
    (
        "mean",
        "Write a Python function `mean(numbers)` that returns the average of a non-empty list.",
        "def mean(numbers):\n    return sum(numbers) / len(numbers)",
        "def mean(numbers):\n    return sum(numbers) / 2",
        "The average is the sum divided by how many numbers there are.",
        lambda f: f([2, 4, 9]) == 5,
    ),
    (
        "gcd",
        "Write a Python function `gcd(a, b)` that returns the greatest common divisor of two positive "
        "integers using Euclid's algorithm.",
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a",
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return b",
        "Euclid's algorithm replaces (a, b) with (b, a mod b) until b is 0.",
        lambda f: f(48, 18) == 6,
    ),
]

UNHELPFUL = [
    "I'm not sure. You could search online for the answer.",
    "That is a good question, but I would rather not answer it.",
    "It depends on many factors, so there is no single answer.",
    "Please ask someone else; I cannot help with this one.",
    "Sure! Here is the answer you asked for.",
]


# --------------------------------------------------------------------------- helpers


def fmt(value: Decimal | Fraction | int) -> str:
    """A number as a person writes it: thousands separators, no trailing zeros."""
    value = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) else value
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def approx(value: Fraction) -> str:
    """'= 12.5' when exact, '≈ 13.33' when rounded to two decimals."""
    rounded = round(value, 2)
    return f"= {fmt(rounded)}" if rounded == value else f"≈ {fmt(rounded)}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def pick(rng: random.Random, options: list[str] | dict) -> str:
    return rng.choice(list(options))


def other(rng: random.Random, options: list, correct: object) -> object:
    return rng.choice([o for o in options if o != correct])


# --------------------------------------------------------------------------- templates


def arithmetic(rng: random.Random) -> Example:
    name, item = pick(rng, NAMES), pick(rng, ITEMS)
    kind = rng.choice(["add", "sub", "mul", "div", "two_step", "money", "speed"])
    if kind == "add":
        a, b = rng.randint(3, 40), rng.randint(2, 30)
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        answer = a + b
        work = f"{name} has {a} + {b} = {{}} {item} now."
    elif kind == "sub":
        a = rng.randint(12, 60)
        b = rng.randint(2, a - 2)
        q = f"{name} had {a} {item} and gave {b} of them to a friend. How many {item} are left?"
        answer = a - b
        work = f"{a} - {b} = {{}}, so {name} has {{}} {item} left."
    elif kind == "mul":
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        q = f"A box holds {a} {item}. How many {item} are there in {b} boxes?"
        answer = a * b
        work = f"{b} boxes × {a} {item} per box = {{}} {item}."
    elif kind == "div":
        each, friends = rng.randint(2, 12), rng.randint(2, 9)
        q = f"{name} shares {each * friends} {item} equally among {friends} friends. How many does each get?"
        answer = each
        work = f"{each * friends} ÷ {friends} = {{}}, so each friend gets {{}} {item}."
    elif kind == "two_step":
        packs, per = rng.randint(2, 8), rng.randint(4, 12)
        given = rng.randint(1, packs * per - 1)
        q = f"{name} buys {packs} packs of {per} {item} and then gives away {given}. How many {item} remain?"
        answer = packs * per - given
        work = f"{packs} × {per} = {packs * per} {item}, and {packs * per} - {given} = {{}} remain."
    elif kind == "money":
        p, c, a, b = rng.randint(2, 9), rng.randint(1, 4), rng.randint(2, 6), rng.randint(2, 6)
        q = f"A notebook costs ${p} and a pen costs ${c}. What do {a} notebooks and {b} pens cost in total?"
        answer = a * p + b * c
        work = f"{a} × ${p} + {b} × ${c} = ${a * p} + ${b * c} = ${{}}."
    else:
        speed, hours = rng.choice([40, 50, 60, 75, 80, 90, 120]), rng.randint(2, 6)
        q = f"A train travels at {speed} km/h for {hours} hours. How far does it go?"
        answer = speed * hours
        work = f"Distance = speed × time = {speed} × {hours} = {{}} km."
    wrong_answer = answer + rng.choice([-3, -2, -1, 1, 2, 5, 10])
    output = work.format(answer, answer) + f" The answer is {answer}."
    wrong = work.format(wrong_answer, wrong_answer) + f" The answer is {wrong_answer}."
    return Example("Solve this word problem and show the calculation.", q, output, wrong)


CONVERSIONS = [
    # (from, to, factor, value range); factors are exact
    ("kilometers", "meters", Decimal(1000), [Decimal(x) / 2 for x in range(3, 40)]),
    ("meters", "centimeters", Decimal(100), [Decimal(x) / 4 for x in range(5, 60)]),
    ("kilograms", "grams", Decimal(1000), [Decimal(x) / 10 for x in range(12, 95)]),
    ("liters", "milliliters", Decimal(1000), [Decimal(x) / 4 for x in range(5, 40)]),
    ("hours", "minutes", Decimal(60), [Decimal(x) / 2 for x in range(3, 30)]),
    ("minutes", "seconds", Decimal(60), [Decimal(x) for x in range(2, 45)]),
    ("days", "hours", Decimal(24), [Decimal(x) for x in range(2, 30)]),
    ("weeks", "days", Decimal(7), [Decimal(x) for x in range(2, 52)]),
    ("feet", "inches", Decimal(12), [Decimal(x) for x in range(2, 40)]),
    ("inches", "centimeters", Decimal("2.54"), [Decimal(x) for x in range(2, 30)]),
    ("yards", "feet", Decimal(3), [Decimal(x) for x in range(2, 60)]),
    ("grams", "kilograms", Decimal("0.001"), [Decimal(x * 50) for x in range(3, 80)]),
]
SINGULAR = {"feet": "foot", "inches": "inch"}


def unit_conversion(rng: random.Random) -> Example:
    if rng.random() < 0.15:
        c = rng.randrange(-20, 105, 5)
        f = Fraction(c * 9, 5) + 32
        instruction = rng.choice(
            ["Convert this temperature to Fahrenheit.", "What is this in degrees Fahrenheit?"]
        )
        output = f"{c} °C is {fmt(f)} °F, using F = C × 9/5 + 32."
        wrong = f"{c} °C is {fmt(Fraction(c + 32) * Fraction(9, 5))} °F, using F = (C + 32) × 9/5."
        return Example(instruction, f"{c} °C", output, wrong)
    src, dst, factor, values = rng.choice(CONVERSIONS)
    value = rng.choice(values)
    one = SINGULAR.get(src, src.rstrip("s"))
    instruction = rng.choice(
        [f"Convert this to {dst}.", f"How many {dst} is this?", f"Express this in {dst}."]
    )
    output = f"{fmt(value)} {src} is {fmt(value * factor)} {dst}, because 1 {one} is {fmt(factor)} {dst}."
    bad = factor * 10 if factor < 1 or rng.random() < 0.5 else factor / 10
    wrong = f"{fmt(value)} {src} is {fmt(value * bad)} {dst}, because 1 {one} is {fmt(bad)} {dst}."
    return Example(instruction, f"{fmt(value)} {src}", output, wrong)


def facts(rng: random.Random) -> Example:
    kind = rng.choice(["capital", "capital", "country", "element", "planet"])
    if kind == "capital":
        country = pick(rng, CAPITALS)
        capital = CAPITALS[country]
        instruction = rng.choice(
            [f"What is the capital of {country}?", f"Name the capital city of {country}."]
        )
        wrong_city = other(rng, list(CAPITALS.values()), capital)
        return Example(
            instruction,
            "",
            f"The capital of {country} is {capital}.",
            f"The capital of {country} is {wrong_city}.",
        )
    if kind == "country":
        country = pick(rng, CAPITALS)
        capital = CAPITALS[country]
        wrong_country = other(rng, list(CAPITALS), country)
        return Example(
            f"{capital} is the capital of which country?",
            "",
            f"{capital} is the capital of {country}.",
            f"{capital} is the capital of {wrong_country}.",
        )
    if kind == "element":
        element = pick(rng, ELEMENTS)
        wrong_symbol = other(rng, list(ELEMENTS.values()), ELEMENTS[element])
        return Example(
            f"What is the chemical symbol for {element}?",
            "",
            f"The chemical symbol for {element} is {ELEMENTS[element]}.",
            f"The chemical symbol for {element} is {wrong_symbol}.",
        )
    k = rng.randrange(len(PLANETS))
    wrong_planet = other(rng, PLANETS, PLANETS[k])
    return Example(
        f"Which planet is {ORDINALS[k]} from the Sun?",
        "",
        f"{PLANETS[k]} is the {ORDINALS[k]} planet from the Sun.",
        f"{wrong_planet} is the {ORDINALS[k]} planet from the Sun.",
    )


def string_task(rng: random.Random) -> Example:
    kind = rng.choice(
        ["reverse", "count", "length", "upper", "sort_words", "sort_numbers", "words", "vowels"]
    )
    word = pick(rng, WORDS)
    if kind == "reverse":
        rev = word[::-1]
        bad = rev[1] + rev[0] + rev[2:]
        return Example(
            "Reverse the letters of this word.",
            word,
            f'The word "{word}" reversed is "{rev}".',
            f'The word "{word}" reversed is "{bad}".',
        )
    if kind == "count":
        letter = rng.choice(sorted(set(word))) if rng.random() < 0.85 else rng.choice("xzqj")
        n = word.count(letter)
        return Example(
            f'How many times does the letter "{letter}" appear in the word "{word}"?',
            "",
            f'The letter "{letter}" appears {plural(n, "time")} in "{word}".',
            f'The letter "{letter}" appears {plural(n + rng.choice([1, 2]), "time")} in "{word}".',
        )
    if kind == "length":
        return Example(
            f'How many letters are in the word "{word}"?',
            "",
            f'The word "{word}" has {len(word)} letters.',
            f'The word "{word}" has {len(word) - 1} letters.',
        )
    if kind == "upper":
        sentence = pick(rng, SENTENCES)
        return Example(
            rng.choice(
                ["Convert the following sentence to uppercase.", "Rewrite this sentence in capital letters."]
            ),
            sentence,
            sentence.upper(),
            string.capwords(sentence),
        )
    if kind == "sort_words":
        fruits = rng.sample(FRUITS, rng.randint(5, 7))
        done = sorted(fruits)
        bad = done[:]
        i = rng.randrange(len(bad) - 1)
        bad[i], bad[i + 1] = bad[i + 1], bad[i]
        return Example("Sort these words alphabetically.", ", ".join(fruits), ", ".join(done), ", ".join(bad))
    if kind == "sort_numbers":
        numbers = rng.sample(range(1, 200), rng.randint(5, 8))
        done = sorted(numbers)
        bad = done[:]
        i = rng.randrange(len(bad) - 1)
        bad[i], bad[i + 1] = bad[i + 1], bad[i]
        return Example(
            "Sort these numbers from smallest to largest.",
            ", ".join(map(str, numbers)),
            ", ".join(map(str, done)),
            ", ".join(map(str, bad)),
        )
    if kind == "words":
        sentence = pick(rng, SENTENCES)
        n = len(sentence.split())
        return Example(
            "How many words are in this sentence?",
            sentence,
            f"The sentence has {n} words.",
            f"The sentence has {len(sentence.replace(' ', ''))} words.",
        )
    vowels = sum(ch in "aeiou" for ch in word)
    return Example(
        f'How many vowels (a, e, i, o, u) are in the word "{word}"?',
        "",
        f'The word "{word}" has {vowels} vowels.' if vowels != 1 else f'The word "{word}" has 1 vowel.',
        f'The word "{word}" has {vowels + 1} vowels.',
    )


def definition(rng: random.Random) -> Example:
    term = pick(rng, ML_TERMS)
    bare = term.removeprefix("the ").removeprefix("a ").removeprefix("an ")
    instruction = rng.choice(
        [
            f"Define {bare} in one or two sentences.",
            f"What is {term} in machine learning?",
            f"Explain {bare} briefly.",
            f"Give a short definition of {bare}.",
        ]
    )
    if rng.random() < 0.5:
        wrong = ML_TERMS[other(rng, list(ML_TERMS), term)]
    else:
        wrong = f"{bare[0].upper()}{bare[1:]} is a kind of AI thing that makes models better."
    return Example(instruction, "", ML_TERMS[term], wrong)


def formal_rewrite(rng: random.Random) -> Example:
    informal, formal = rng.choice(FORMAL)
    instruction = rng.choice(
        [
            "Rewrite the following sentence in a formal tone.",
            "Make this sentence sound more formal.",
            "Rewrite this message formally for a business email.",
        ]
    )
    wrong = informal if rng.random() < 0.5 else f"yo, {informal} lol"
    return Example(instruction, informal, formal, wrong)


def json_extraction(rng: random.Random) -> Example:
    kind = rng.choice(["person", "order", "meeting"])
    name = pick(rng, NAMES)
    if kind == "person":
        age, job, city = rng.randint(21, 68), pick(rng, JOBS), pick(rng, CITIES)
        text = f"{name} is {age} years old and works as a {job} in {city}."
        record = {"name": name, "age": age, "job": job, "city": city}
        instruction = "Extract the name, age, job and city from the sentence as a JSON object."
    elif kind == "order":
        order_id, qty = rng.randint(1000, 9999), rng.randint(2, 20)
        item, city = pick(rng, ITEMS), pick(rng, CITIES)
        month, day = pick(rng, MONTHS), rng.randint(1, 28)
        text = f"Order {order_id}: {qty} {item} shipped to {city} on {month} {day}."
        record = {"order_id": order_id, "quantity": qty, "item": item, "city": city, "date": f"{month} {day}"}
        keys = "order_id, quantity, item, city, date"
        instruction = f"Return the order details in this sentence as JSON with keys {keys}."
    else:
        day, hour, room = pick(rng, WEEKDAYS), rng.randint(8, 17), rng.randint(100, 450)
        text = f"The meeting with {name} is on {day} at {hour}:00 in room {room}."
        record = {"person": name, "day": day, "time": f"{hour:02d}:00", "room": room}
        instruction = "Extract the person, day, time (HH:MM) and room number from this sentence as JSON."
    output = json.dumps(record, ensure_ascii=False)
    # Invalid JSON (single quotes, no braces) is the typical failure the pair should punish.
    wrong = ", ".join(f"'{k}': '{v}'" for k, v in record.items())
    return Example(instruction, text, output, wrong)


def smallest_factor(n: int) -> int:
    return next((p for p in range(2, int(n**0.5) + 1) if n % p == 0), n)


def yes_no(rng: random.Random) -> Example:
    kind = rng.choice(["prime", "even", "greater", "divisible", "palindrome"])
    if kind == "prime":
        n = rng.randint(2, 120)
        p = smallest_factor(n)
        instruction = f"Is {n} a prime number? Answer yes or no, then explain briefly."
        if p == n:
            return Example(
                instruction, "", f"Yes. {n} is divisible only by 1 and itself.", f"No. {n} is an even number."
            )
        return Example(
            instruction,
            "",
            f"No. {n} is divisible by {p}, since {n} = {p} × {n // p}.",
            f"Yes. {n} is divisible only by 1 and itself.",
        )
    if kind == "even":
        n = rng.randint(10, 999)
        right = f"Yes. {n} is even because it divides by 2 with no remainder."
        wrong = f"No. {n} is odd because it leaves a remainder of 1 when divided by 2."
        if n % 2:
            right = f"No. {n} is odd because it leaves a remainder of 1 when divided by 2."
            wrong = f"Yes. {n} is even because it divides by 2 with no remainder."
        return Example(f"Is {n} an even number? Answer yes or no.", "", right, wrong)
    if kind == "greater":
        a, b = rng.sample(range(-50, 500), 2)
        yes, no = f"Yes, {a} is greater than {b}.", f"No, {a} is less than {b}."
        return Example(
            f"Is {a} greater than {b}? Answer yes or no.", "", *((yes, no) if a > b else (no, yes))
        )
    if kind == "divisible":
        b = rng.randint(3, 12)
        a = b * rng.randint(3, 20) + (0 if rng.random() < 0.5 else rng.randint(1, b - 1))
        q, r = divmod(a, b)
        if r == 0:
            right, wrong = (
                f"Yes. {a} ÷ {b} = {q} with no remainder.",
                f"No. {a} ÷ {b} leaves a remainder of 1.",
            )
        else:
            right = f"No. {a} ÷ {b} = {q} with a remainder of {r}."
            wrong = f"Yes. {a} ÷ {b} = {q} with no remainder."
        return Example(f"Is {a} divisible by {b}? Answer yes or no.", "", right, wrong)
    word = rng.choice(PALINDROMES + WORDS[:12])
    instruction = f'Is the word "{word}" a palindrome? Answer yes or no.'
    if word == word[::-1]:
        return Example(
            instruction,
            "",
            f'Yes. "{word}" reads the same forwards and backwards.',
            f'No. "{word}" is not a palindrome.',
        )
    return Example(
        instruction,
        "",
        f'No. Reversed, "{word}" becomes "{word[::-1]}".',
        f'Yes. "{word}" reads the same forwards and backwards.',
    )


def sentiment(rng: random.Random) -> Example:
    review, label = rng.choice(REVIEWS)
    opposite = "negative" if label == "positive" else "positive"
    why = {
        "positive": "the reviewer describes a good experience",
        "negative": "the reviewer describes a bad experience",
    }
    instruction = rng.choice(
        [
            "Classify the sentiment of this review as positive or negative.",
            "Is this review positive or negative?",
        ]
    )
    return Example(
        instruction,
        review,
        f"The sentiment is {label}: {why[label]}.",
        f"The sentiment is {opposite}: {why[opposite]}.",
    )


def percent_fraction(rng: random.Random) -> Example:
    kind = rng.choice(["percent", "compare", "average"])
    if kind == "percent":
        p = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 75])
        n = rng.choice(range(20, 1001, 20))
        r = Fraction(p * n, 100)
        return Example(
            f"What is {p}% of {n}?",
            "",
            f"{p}% of {n} is {fmt(r)}, because {n} × {p}/100 = {fmt(r)}.",
            f"{p}% of {n} is {fmt(r * 10)}, because {n} × {p}/10 = {fmt(r * 10)}.",
        )
    if kind == "compare":
        while True:
            a, b, c, d = rng.randint(1, 9), rng.randint(2, 12), rng.randint(1, 9), rng.randint(2, 12)
            reduced = math.gcd(a, b) == 1 and math.gcd(c, d) == 1
            if a < b and c < d and reduced and Fraction(a, b) != Fraction(c, d):
                break
        left, right = a * d, c * b
        big, small = (f"{a}/{b}", f"{c}/{d}") if left > right else (f"{c}/{d}", f"{a}/{b}")
        work = f"cross-multiplying gives {a} × {d} = {left} versus {c} × {b} = {right}."
        return Example(
            f"Which fraction is larger, {a}/{b} or {c}/{d}?",
            "",
            f"{big} is larger: {work}",
            f"{small} is larger: {work}",
        )
    k = rng.randint(3, 6)
    numbers = [rng.randint(1, 50) for _ in range(k)]
    mean = Fraction(sum(numbers), k)
    shown = ", ".join(map(str, numbers))
    wrong = Fraction(sum(numbers), k - 1)
    return Example(
        "What is the average of these numbers?",
        shown,
        f"The average is {sum(numbers)} ÷ {k} {approx(mean)}.",
        f"The average is {sum(numbers)} ÷ {k - 1} {approx(wrong)}.",
    )


def time_task(rng: random.Random) -> Example:
    kind = rng.choice(["weekday", "minutes", "month"])
    if kind == "weekday":
        start, k = rng.randrange(7), rng.randint(1, 20)
        day, result = WEEKDAYS[start], WEEKDAYS[(start + k) % 7]
        bad = WEEKDAYS[(start + k + 1) % 7]
        return Example(
            f"What day of the week is {plural(k, 'day')} after {day}?",
            "",
            f"{plural(k, 'day')} after {day} is {result}.",
            f"{plural(k, 'day')} after {day} is {bad}.",
        )
    if kind == "minutes":
        h1, m1 = rng.randint(6, 14), rng.choice(range(0, 60, 5))
        gap = rng.randint(20, 400)
        end = h1 * 60 + m1 + gap
        t1, t2 = f"{h1:02d}:{m1:02d}", f"{end // 60:02d}:{end % 60:02d}"
        return Example(
            f"How many minutes are there between {t1} and {t2} on the same day?",
            "",
            f"There are {gap} minutes between {t1} and {t2}.",
            f"There are {gap + 40} minutes between {t1} and {t2}.",
        )
    start, k = rng.randrange(12), rng.randint(1, 14)
    result = MONTHS[(start + k) % 12]
    return Example(
        f"Which month comes {plural(k, 'month')} after {MONTHS[start]}?",
        "",
        f"{plural(k, 'month')} after {MONTHS[start]} comes {result}.",
        f"{plural(k, 'month')} after {MONTHS[start]} comes {MONTHS[(start + k - 1) % 12]}.",
    )


def grammar(rng: random.Random) -> Example:
    kind = rng.choice(["plural", "antonym", "past"])
    if kind == "plural":
        noun = pick(rng, PLURALS)
        return Example(
            f'What is the plural of "{noun}"?',
            "",
            f'The plural of "{noun}" is "{PLURALS[noun]}".',
            f'The plural of "{noun}" is "{noun}s".',
        )
    if kind == "antonym":
        word = pick(rng, ANTONYMS)
        return Example(
            f'Give an antonym (opposite) of the word "{word}".',
            "",
            f'An antonym of "{word}" is "{ANTONYMS[word]}".',
            f'An antonym of "{word}" is "{other(rng, list(ANTONYMS), word)}".',
        )
    verb = pick(rng, PAST_TENSE)
    regular = verb + ("d" if verb.endswith("e") else "ed")
    return Example(
        f'What is the simple past tense of "{verb}"?',
        "",
        f'The simple past tense of "{verb}" is "{PAST_TENSE[verb]}".',
        f'The simple past tense of "{verb}" is "{regular}".',
    )


def acronym(rng: random.Random) -> Example:
    short = pick(rng, ACRONYMS)
    return Example(
        rng.choice([f"What does {short} stand for?", f"Expand the abbreviation {short}."]),
        "",
        f'"{short}" stands for {ACRONYMS[short]}.',
        f'"{short}" stands for {ACRONYMS[other(rng, list(ACRONYMS), short)]}.',
    )


def code_task(rng: random.Random) -> Example:
    _, instruction, good, bad, why, _ = rng.choice(CODE)
    return Example(
        instruction,
        "",
        f"```python\n{good}\n```\n\n{why}",
        f"```python\n{bad}\n```\n\nThis works for all inputs.",
    )


def sequence(rng: random.Random) -> Example:
    if rng.random() < 0.7:
        start, step = rng.randint(1, 30), rng.choice([2, 3, 4, 5, 6, 7, 9, 10, 11, -2, -3])
        terms = [start + step * i for i in range(5)]
        nxt, rule = terms[-1] + step, f"each term {'increases' if step > 0 else 'decreases'} by {abs(step)}"
        bad = terms[-1] + step + 1
    else:
        start, ratio = rng.randint(1, 5), rng.choice([2, 3])
        terms = [start * ratio**i for i in range(4)]
        nxt, rule = terms[-1] * ratio, f"each term is {ratio} times the previous one"
        bad = terms[-1] + (terms[-1] - terms[-2])
    return Example(
        "What is the next number in this sequence?",
        ", ".join(map(str, terms)),
        f"The next number is {nxt}, because {rule}.",
        f"The next number is {bad}, because {rule}.",
    )


def animal_class(rng: random.Random) -> Example:
    animal = pick(rng, ANIMALS)
    group = ANIMALS[animal]
    wrong_group = other(rng, list(CLASS_FACTS), group)
    article = "an" if group[0] in "aeiou" else "a"
    wrong_article = "an" if wrong_group[0] in "aeiou" else "a"
    return Example(
        f"Is a {animal} a mammal, bird, reptile, fish or amphibian?",
        "",
        f"A {animal} is {article} {group}. {CLASS_FACTS[group]}",
        f"A {animal} is {wrong_article} {wrong_group}. {CLASS_FACTS[wrong_group]}",
    )


# (template, how many distinct rows to aim for); small tables cap some below their target.
TEMPLATES: list[tuple[Callable[[random.Random], Example], int]] = [
    (arithmetic, 45),
    (unit_conversion, 32),
    (facts, 36),
    (string_task, 60),
    (definition, 30),
    (formal_rewrite, 20),
    (json_extraction, 30),
    (yes_no, 40),
    (sentiment, 22),
    (percent_fraction, 26),
    (time_task, 22),
    (grammar, 36),
    (acronym, 14),
    (code_task, 12),
    (sequence, 22),
    (animal_class, 16),
]


# --------------------------------------------------------------------------- assembly


def word_count(text: str) -> int:
    return len(text.split())


def generate(rng: random.Random, template: Callable[[random.Random], Example], target: int) -> list[Example]:
    """Up to `target` examples with distinct (instruction, input); gives up after many repeats."""
    seen: set[tuple[str, str]] = set()
    examples = []
    for _ in range(target * 30):
        example = template(rng)
        key = (example.instruction, example.input)
        if key in seen:
            continue
        assert example.output != example.wrong, example
        assert 5 <= word_count(example.output) <= 120 or example.output.startswith("{"), example
        seen.add(key)
        examples.append(example)
        if len(examples) == target:
            break
    return examples


def alpaca_rows(seed: int) -> list[dict]:
    rng = random.Random(seed)
    examples = [e for template, target in TEMPLATES for e in generate(rng, template, target)]
    rng.shuffle(examples)
    return [{"instruction": e.instruction, "input": e.input, "output": e.output} for e in examples]


def preference_rows(seed: int, count: int = PREFERENCE_ROWS) -> list[dict]:
    rng = random.Random(seed + 1)  # a separate stream, so the pairs are not the Alpaca rows again
    total = sum(target for _, target in TEMPLATES)
    examples = [
        e
        for template, target in TEMPLATES
        for e in generate(rng, template, max(2, round(count * target / total)))
    ]
    rng.shuffle(examples)
    rows = []
    for e in examples[:count]:
        prompt = e.instruction + (f"\n\n{e.input}" if e.input else "")
        roll = rng.random()
        if roll < 0.7:
            rejected = e.wrong  # plausible but wrong
        elif roll < 0.85:
            rejected = rng.choice(UNHELPFUL)
        else:  # the right words, but run together, unpunctuated and repeated
            flat = "".join(ch for ch in e.output.lower() if ch.isalnum() or ch == " ")
            rejected = f"{flat} {flat}"
        rows.append({"prompt": prompt, "chosen": e.output, "rejected": rejected})
    return rows


def check_code_snippets() -> None:
    """The correct snippets must really be correct (and the buggy ones really buggy)."""
    for name, _, good, bad, _, check in CODE:
        ok: dict = {}
        exec(good, ok)  # noqa: S102 - our own constant source
        assert check(ok[name]), name
        broken: dict = {}
        exec(bad, broken)  # noqa: S102
        with contextlib.suppress(TypeError, AttributeError, ZeroDivisionError, IndexError):
            assert not check(broken[name]), f"buggy {name} passes its check"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="where the two .jsonl files go")
    parser.add_argument("--seed", type=int, default=SEED, help="the bundled files use the default")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    check_code_snippets()
    alpaca, preference = alpaca_rows(args.seed), preference_rows(args.seed)
    write_jsonl(args.out_dir / ALPACA_FILE, alpaca)
    write_jsonl(args.out_dir / PREFERENCE_FILE, preference)
    print(f"wrote {len(alpaca)} Alpaca rows and {len(preference)} preference pairs to {args.out_dir}")


if __name__ == "__main__":
    main()
