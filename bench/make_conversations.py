"""Write the bundled sample posttrain/data/scored_conversations.jsonl (seed 003's row format).

84 prompts (math, time planning, notes to summarise, general knowledge, how-to, advice
under constraints, programming, writing, explanations), 1-3 human turns each, and three
rated answers per prompt: one high (4-5), one middle (2-3), one low (0-1), so every
integer score bucket holds 42 rows and every prompt yields preference pairs.

Scores are earned by the text, by fixed rules a reward model can learn:

| score | answer                                                                 |
|-------|------------------------------------------------------------------------|
| 5     | correct, relevant, concise, uses the facts given in the question        |
| 4.5   | the same plus a closing filler sentence                                 |
| 4     | correct but terse or missing a requested detail                         |
| 3     | on topic but vague: never gives the actual answer                       |
| 2.5   | rambling: the right first sentence repeated with filler                 |
| 2     | evasive and too short ("It depends.")                                   |
| 1.5   | right method, arithmetic slip                                           |
| 1     | wrong, or contradicts the question's facts or constraints              |
| 0.5   | friendly filler that ignores the question                               |
| 0     | off-topic: a good answer to a different question                        |

Every answer and reason is written here or computed from templates; nothing is copied
from an existing dataset. Output is byte-for-byte deterministic for a given --seed.

    python bench/make_conversations.py            # rewrite the bundled file
    python bench/make_conversations.py --out /tmp/scored.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

SEED = 3003
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "posttrain" / "data" / "scored_conversations.jsonl"


@dataclass
class Item:
    """One prompt and the answers it can get; `family` keeps off-topic answers truly off topic."""

    family: str
    topic: str
    question: str
    ideal: str
    vague: str
    wrong: str
    wrong_reason: str
    uses: str = "answers exactly what was asked"
    vague_reason: str = "On topic but too vague to help: it never gives the actual answer."
    partial: str | None = None
    partial_reason: str = "Correct, but terse: no explanation or context."
    slip: str | None = None
    slip_reason: str = ""
    context: list[tuple[str, str]] = field(default_factory=list)  # (human, assistant) exchanges before


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
THINGS = ["apples", "pencils", "marbles", "stickers", "cookies", "stamps"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

PLACES = [
    ("Orion", "library", "books", (20_000, 90_000, 1000)),
    ("Maple Ridge", "museum", "paintings", (200, 2000, 10)),
    ("Bluewater", "aquarium", "fish tanks", (20, 90, 1)),
    ("Silverpine", "school", "students", (300, 1500, 10)),
    ("Harbor Light", "hospital", "beds", (80, 400, 5)),
    ("Cedar Hollow", "stadium", "seats", (5000, 40_000, 500)),
    ("Northgate", "zoo", "animals", (150, 900, 10)),
    ("Amberfield", "theatre", "seats", (300, 1200, 10)),
    ("Willowmere", "observatory", "telescopes", (3, 12, 1)),
    ("Stonebridge", "farm", "cows", (40, 300, 5)),
    ("Redcliff", "bakery", "ovens", (3, 10, 1)),
    ("Lakeshore", "park", "trees", (500, 5000, 50)),
]
CITIES = ["Halden", "Brookmere", "Velport", "Eastwick", "Corran", "Lindvale", "Tessford", "Kelby", "Ardmoor"]

HOBBIES = {
    "painting": "a set of good watercolour paints and a sketchbook",
    "hiking": "a light daypack or a good insulated water bottle",
    "cooking": "a cast-iron pan or a cookbook from a cuisine she likes",
    "reading": "two new novels and a clip-on reading light",
    "gardening": "a pair of good pruning shears and some seed packets",
    "music": "a songbook for her instrument or tickets to a small local concert",
}

FILLERS = [
    "I hope this helps, and feel free to ask if anything is unclear!",
    "Let me know if you have any other questions at all.",
    "This is a common question, and many people wonder about it.",
    "Thanks for the question, it was a fun one to think about.",
]
RAMBLE_OPEN = [
    "Well, okay, so let me think about this one for a moment.",
    "Hmm, that is a really interesting question and there is a lot to say about it.",
    "Right, so, this is something that comes up a lot, you know.",
]
RAMBLE_REPEAT = [
    "As I said before,",
    "To say it again,",
    "Basically, once more,",
    "In other words, and this is key,",
]
RAMBLE_CLOSE = [
    "So yes, that is more or less it, I think, basically.",
    "Anyway, that is the answer, as I keep saying.",
    "And that is really all there is to it, as I said.",
]
EVASIVE = ["It depends.", "Hard to say, really.", "Maybe, it varies.", "Not sure, look it up."]
CHITCHAT = [
    "What a great question! There are so many interesting things to think about. Have a wonderful day!",
    "Thanks for asking! I really enjoy our chats and I hope your week is going well.",
    "Oh, I love questions like this one. Life is full of surprises, isn't it? Take care!",
]
INTROS = ["Hi! I have a question about {topic}.", "Can you help me with something about {topic}?"]
INTRO_REPLIES = [
    "Sure, go ahead and ask.",
    "Of course. What would you like to know?",
    "Happy to help. What is your question?",
]
BRIEF = ("Please keep your answer short and to the point.", "Understood, I will keep it brief.")


def clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def money(value: int) -> str:
    return f"${value}"


# --------------------------------------------------------------------------- templated families


def math_items(rng: random.Random) -> list[Item]:
    items = []
    for _ in range(3):
        name, other = rng.sample(NAMES, 2)
        thing = rng.choice(THINGS)
        a, b = rng.randint(8, 30), rng.randint(3, 15)
        c = rng.randint(2, a - 2)
        r = a + b - c
        items.append(
            Item(
                "math",
                f"{name}'s {thing}",
                f"{name} has {a} {thing} and buys {b} more. Then {other} takes {c} of them. "
                f"How many {thing} does {name} have now?",
                ideal=f"{name} has {r} {thing} now: {a} plus the {b} bought is {a + b}, "
                f"and after {other} takes {c} there are {r} left.",
                partial=f"{r} {thing}.",
                partial_reason="Correct, but gives only the number, without the working.",
                vague=f"You add the {thing} {name} buys and subtract the ones {other} takes.",
                vague_reason="Describes the method but never gives the final number.",
                wrong=f"{name} has {a + b + c} {thing} now.",
                wrong_reason=f"Wrong: adds the {c} {thing} {other} took instead of subtracting them; "
                f"the answer is {r}.",
                slip=f"{a} plus {b} is {a + b + 1}, and taking away {c} leaves {a + b + 1 - c} {thing}.",
                slip_reason=f"Right method, but {a} + {b} is {a + b}, not {a + b + 1}, so the answer is {r}, "
                f"not {a + b + 1 - c}.",
                uses=f"works from the {a}, {b} and {c} in the question",
            )
        )
    for _ in range(3):
        name = rng.choice(NAMES)
        q, p, pen = rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 4)
        total = q * p + pen
        items.append(
            Item(
                "math",
                "a shopping bill",
                f"{name} buys {q} notebooks at {money(p)} each and one pen for {money(pen)}. "
                "What is the total cost?",
                ideal=f"The total is {money(total)}: {q} notebooks at {money(p)} each cost {money(q * p)}, "
                f"plus {money(pen)} for the pen.",
                partial=f"{money(total)}.",
                partial_reason="Correct, but gives only the total, without the working.",
                vague="Multiply the notebooks by their price and then add the pen.",
                vague_reason="Describes the method but never gives the total.",
                wrong=f"The total is {money(q + p + pen)}.",
                wrong_reason=f"Wrong: adds {q} + {p} + {pen} instead of multiplying {q} notebooks by "
                f"{money(p)}; the total is {money(total)}.",
                slip=f"{q} notebooks at {money(p)} cost {money(q * p + p)}, so the total is "
                f"{money(q * p + p + pen)}.",
                slip_reason=f"Right method, but {q} x {money(p)} is {money(q * p)}, not {money(q * p + p)}; "
                f"the total is {money(total)}.",
                uses=f"uses the {q} notebooks, the {money(p)} price and the {money(pen)} pen",
            )
        )
    for _ in range(3):
        v, h = rng.choice([12, 15, 18, 20, 24]), rng.randint(2, 5)
        d = v * h
        items.append(
            Item(
                "math",
                "a cycling trip",
                f"A cyclist rides at {v} km/h for {h} hours. How far does she travel?",
                ideal=f"She travels {d} km: {v} km/h for {h} hours is {v} x {h} = {d} km.",
                partial=f"{d} km.",
                partial_reason="Correct, but gives only the number, without the working.",
                vague="Distance is speed times time, so you can work it out from those.",
                vague_reason="States the formula but never gives the distance.",
                wrong=f"She travels {v + h} km.",
                wrong_reason=f"Wrong: adds the speed and the time instead of multiplying; "
                f"{v} x {h} = {d} km.",
                slip=f"{v} x {h} is {d + v}, so she travels {d + v} km.",
                slip_reason=f"Right formula, but {v} x {h} is {d}, not {d + v}.",
                uses=f"multiplies the {v} km/h by the {h} hours given",
            )
        )
    for _ in range(3):
        n, per = rng.choice([3, 4, 5, 6]), rng.randint(12, 40)
        t = n * per
        items.append(
            Item(
                "math",
                "splitting a dinner bill",
                f"Dinner for {n} friends costs {money(t)}. If they split the bill evenly, "
                "how much does each person pay?",
                ideal=f"Each person pays {money(per)}: {money(t)} divided by {n} people is {money(per)}.",
                partial=f"{money(per)} each.",
                partial_reason="Correct, but gives only the amount, without the working.",
                vague="Divide the bill by the number of people.",
                vague_reason="Describes the method but never gives the amount.",
                wrong=f"Each person pays {money(t - n)}.",
                wrong_reason=f"Wrong: subtracts {n} from the bill instead of dividing by {n}; "
                f"each person pays {money(per)}.",
                slip=f"{money(t)} divided by {n} is {money(per + 2)}, so each person pays {money(per + 2)}.",
                slip_reason=f"Right method, but {money(t)} / {n} is {money(per)}, not {money(per + 2)}.",
                uses=f"divides the {money(t)} by the {n} people",
            )
        )
    for _ in range(3):
        p, d = rng.choice([40, 60, 80, 120, 200]), rng.choice([10, 20, 25, 50])
        off = p * d // 100
        items.append(
            Item(
                "math",
                "a jacket on sale",
                f"A jacket costs {money(p)} and is {d}% off. What is the sale price?",
                ideal=f"The sale price is {money(p - off)}: {d}% of {money(p)} is {money(off)}, "
                f"and {money(p)} minus {money(off)} is {money(p - off)}.",
                partial=f"{money(p - off)}.",
                partial_reason="Correct, but gives only the price, without the working.",
                vague="Take the percentage off the original price.",
                vague_reason="Describes the method but never gives the price.",
                wrong=f"The sale price is {money(p - d)}.",
                wrong_reason=f"Wrong: takes {d} dollars off instead of {d}%; "
                f"the sale price is {money(p - off)}.",
                uses=f"applies the {d}% to the {money(p)} price",
            )
        )
    return items


def time_items(rng: random.Random) -> list[Item]:
    items = []
    for _ in range(3):
        dep = rng.randint(7, 19) * 60 + rng.choice([0, 15, 20, 30, 45, 50])
        t = rng.choice([20, 25, 30, 35, 40, 45, 50])
        items.append(
            Item(
                "time",
                "catching a train",
                f"My train leaves at {clock(dep)} and it takes me {t} minutes to get to the station. "
                "What time should I leave home?",
                ideal=f"Leave home by {clock(dep - t)}, which is {t} minutes before your {clock(dep)} train; "
                "leave a little earlier if you want some slack.",
                partial=f"Leave by {clock(dep - t)}.",
                partial_reason="Correct time, but no explanation of where it comes from.",
                vague="Leave early enough to get there before the train goes.",
                vague_reason="On topic but never gives a time.",
                wrong=f"Leave home at {clock(dep + t)}.",
                wrong_reason=f"Wrong: adds the {t} minutes instead of subtracting them, so you would arrive "
                f"after the {clock(dep)} train has left.",
                slip=f"{t} minutes before {clock(dep)} is {clock(dep - t + 10)}, so leave then.",
                slip_reason=f"Off by ten minutes: {t} minutes before {clock(dep)} is {clock(dep - t)}, "
                f"not {clock(dep - t + 10)}, so you would miss the train.",
                uses=f"subtracts the {t} minutes from the {clock(dep)} departure",
            )
        )
    for _ in range(3):
        start = rng.randint(13, 20) * 60 + rng.choice([0, 15, 30, 45])
        m = rng.choice([105, 110, 120, 135, 140])
        wrong_end = start + 60 + (m - 100)
        items.append(
            Item(
                "time",
                "a movie schedule",
                f"A movie starts at {clock(start)} and runs for {m} minutes. What time does it end?",
                ideal=f"It ends at {clock(start + m)}, {m} minutes after the {clock(start)} start.",
                partial=f"Around {clock(start + m)}.",
                partial_reason="Correct, but hedged and without explanation.",
                vague="It ends a couple of hours after it starts.",
                vague_reason="Vague: never gives the end time.",
                wrong=f"It ends at {clock(wrong_end)}.",
                wrong_reason=f"Wrong: treats {m} minutes as 1 hour {m - 100} minutes; {m} minutes is "
                f"{m // 60} h {m % 60} min, so it ends at {clock(start + m)}.",
                uses=f"adds the {m} minutes to the {clock(start)} start",
            )
        )
    for _ in range(2):
        k, per = rng.choice([2, 3, 4]), rng.choice([20, 25, 30, 40])
        items.append(
            Item(
                "time",
                "cooking a roast",
                f"A roast needs {per} minutes per kilo and weighs {k} kilos. How long should it cook?",
                ideal=f"Cook it for {per * k} minutes: {per} minutes per kilo times {k} kilos.",
                partial=f"{per * k} minutes.",
                partial_reason="Correct, but gives only the number, without the working.",
                vague="Cook it until it is done, depending on the weight.",
                vague_reason="Never gives a cooking time.",
                wrong=f"Cook it for {per + k} minutes.",
                wrong_reason=f"Wrong: adds {per} and {k} instead of multiplying; it needs {per * k} minutes.",
                uses=f"multiplies the {per} minutes per kilo by the {k} kilos",
            )
        )
    return items


def note_items(rng: random.Random) -> list[Item]:
    items = []
    for index, (name, kind, unit, (low, high, step)) in enumerate(PLACES):
        city, city2 = rng.sample(CITIES, 2)
        year = rng.randint(1890, 2015)
        year2 = year + rng.choice([-1, 1]) * rng.randint(5, 30)
        n = rng.randrange(low, high + 1, step)
        n2 = rng.randrange(low, high + 1, step)
        while n2 == n:
            n2 = rng.randrange(low, high + 1, step)
        staff = rng.randint(5, 60)
        passage = (
            f"The {name} {kind} in {city} opened in {year}. It has {n:,} {unit} and {staff} staff members."
        )
        topic = f"the {name} {kind}"
        contradiction = (
            f"Contradicts the note: it opened in {year}, not {year2}, and has {n:,} {unit}, not {n2:,}."
        )
        if index % 2 == 0:
            question = "Summarize the note in one sentence."
            item = Item(
                "notes",
                topic,
                question,
                ideal=f"The {name} {kind} in {city} opened in {year} and has {n:,} {unit} "
                f"and {staff} staff members.",
                partial=f"The {name} {kind} in {city} opened in {year}.",
                partial_reason=f"Accurate, but leaves out the number of {unit} and staff.",
                vague=f"It is a {kind} with some {unit} and a few staff.",
                vague_reason="Vague: drops every fact in the note.",
                wrong=f"The {name} {kind} opened in {year2} in {city2} and has about {n2:,} {unit}.",
                wrong_reason=contradiction[:-1] + f", and it is in {city}, not {city2}.",
                uses="keeps every fact from the note",
            )
        else:
            question = f"According to the note, how many {unit} does the {kind} have, and when did it open?"
            item = Item(
                "notes",
                topic,
                question,
                ideal=f"According to the note, the {name} {kind} has {n:,} {unit} and opened in {year}.",
                partial=f"It has {n:,} {unit}.",
                partial_reason="Correct, but skips when it opened.",
                vague="Quite a lot, and it has been open for a long time.",
                vague_reason="Vague: gives neither the number nor the year from the note.",
                wrong=f"It has {n2:,} {unit} and opened in {year2}.",
                wrong_reason=contradiction,
                uses="quotes the number and the year from the note",
            )
        if rng.random() < 0.5:
            item.context = [(f"Here is a note: {passage}", "Thanks, I have read the note.")]
        else:
            item.question = f"{passage}\n\n{question}"
        items.append(item)
    return items


def advice_items(rng: random.Random) -> list[Item]:
    items = []
    for hobby in rng.sample(sorted(HOBBIES), 4):
        name = rng.choice(NAMES)
        budget, weeks = rng.choice([30, 50, 80, 150]), rng.choice([1, 2, 3])
        gift = HOBBIES[hobby]
        items.append(
            Item(
                "advice",
                "a birthday gift",
                f"I have {money(budget)} and {weeks} weeks until my sister {name}'s birthday. "
                f"She loves {hobby}. What could I get her?",
                ideal=f"Within {money(budget)}, {name} would enjoy {gift}, which suits her love of {hobby}. "
                f"{weeks} weeks is enough time to order it online or pick it up locally.",
                partial=f"Something for {hobby}, like {gift}.",
                partial_reason=f"A good idea for her hobby, but it does not check it against the "
                f"{money(budget)} budget.",
                vague="Get her something she would like.",
                vague_reason=f"Generic: ignores her love of {hobby} and the {money(budget)} budget.",
                wrong=f"Buy {name} a {money(budget * 10)} designer handbag; "
                "going far over budget shows you care.",
                wrong_reason=f"Contradicts the question: ignores the {money(budget)} budget and her interest "
                f"in {hobby}.",
                uses=f"fits her love of {hobby}, the {money(budget)} budget and the {weeks}-week window",
            )
        )
    for minutes in rng.sample([15, 20, 30], 2):
        items.append(
            Item(
                "advice",
                "home exercise",
                f"I can only exercise {minutes} minutes a day and I have no equipment at home. "
                "Can you suggest a routine?",
                ideal=f"In {minutes} minutes with no equipment: warm up by marching in place, "
                "then do rounds of squats, push-ups, lunges and planks with short rests, "
                "and finish with a stretch.",
                partial="Do bodyweight exercises like squats and push-ups.",
                partial_reason="Sensible, but no structure for the time available.",
                vague="Try to move more every day.",
                vague_reason="Generic: no routine at all.",
                wrong="Join a gym and lift heavy weights for two hours a day.",
                wrong_reason=f"Contradicts the question: needs equipment and far more than "
                f"{minutes} minutes.",
                uses=f"fits the {minutes} minutes and needs no equipment",
            )
        )
    for days, hours in [(rng.choice([5, 6]), rng.choice([2, 3])), (rng.choice([8, 10]), rng.choice([3, 4]))]:
        items.append(
            Item(
                "advice",
                "exam preparation",
                f"I have an exam in {days} days and can study {hours} hours a day. How should I plan?",
                ideal=f"That gives you {days * hours} hours. Spend the first days on the topics you know "
                f"least, study {hours} hours a day in focused blocks with short breaks, "
                "and keep the last day for practice questions and review.",
                partial="Focus on your weak topics first and review at the end.",
                partial_reason="Good advice, but not planned around the days and hours given.",
                vague="Study hard and you will be fine.",
                vague_reason="Generic: no plan at all.",
                wrong="Skip studying until the night before and cram all night.",
                wrong_reason=f"Contradicts the question: ignores the {days} days and the {hours}-hour limit, "
                "and cramming works worse than spaced study.",
                uses=f"plans around the {days} days and {hours} hours a day",
            )
        )
    return items


def writing_items(rng: random.Random) -> list[Item]:
    items = []
    events = rng.sample(["team meeting", "design review", "budget call", "project demo", "weekly sync"], 4)
    for event in events:
        d1, d2, d3 = rng.sample(DAYS, 3)
        when = rng.choice(["10:00", "14:30", "9:30", "16:00"])
        title = event[0].upper() + event[1:]
        items.append(
            Item(
                "writing",
                "an email subject line",
                f"Write a one-line email subject telling the team that the {event} moved from {d1} to {d2} "
                f"at {when}.",
                ideal=f"{title} moved to {d2} at {when} (was {d1})",
                partial=f"{title} moved to {d2}",
                partial_reason=f"Clear, but leaves out the new time, {when}.",
                vague="Schedule update",
                vague_reason="Too vague: the subject does not say what moved or when.",
                wrong=f"{title} moved to {d3} at {when}",
                wrong_reason=f"Contradicts the request: says {d3} instead of {d2}.",
                uses=f"gives the new day, {d2}, the time, {when}, and the old day",
            )
        )
    items += [
        Item(
            "writing",
            "polite wording",
            "Rewrite this to sound more polite: 'Send me the report now.'",
            ideal="Could you please send me the report when you have a moment? Thank you!",
            partial="Please send me the report.",
            partial_reason="Politer, but still abrupt.",
            vague="Just be nicer about it.",
            vague_reason="Does not rewrite anything.",
            wrong="Send me the report now, or else.",
            wrong_reason="Makes it ruder, the opposite of what was asked.",
        ),
        Item(
            "writing",
            "polite wording",
            "Rewrite this to sound more polite: 'Your code is wrong, fix it.'",
            ideal="I think there may be a bug in this part of the code; could you take another look "
            "when you get a chance?",
            partial="Please fix your code, it has a bug.",
            partial_reason="Politer, but still blunt.",
            vague="Say it in a friendlier way.",
            vague_reason="Does not rewrite anything.",
            wrong="Your code is terrible and you should know better.",
            wrong_reason="Makes it harsher instead of more polite.",
        ),
    ]
    return items


# --------------------------------------------------------------------------- hand-written families

# (question, ideal, partial, vague, wrong, wrong_reason, topic)
KNOWLEDGE = [
    (
        "Why is the sky blue?",
        "Sunlight is scattered by the gas molecules in the air, and short blue wavelengths scatter much more "
        "than long red ones, so blue light reaches your eyes from every part of the sky.",
        "Because air scatters blue light more than other colours.",
        "It has to do with light and the air.",
        "The sky is blue because it reflects the colour of the oceans.",
        "Wrong: a common myth; the colour comes from sunlight scattering in the air, not from the sea.",
        "the colour of the sky",
    ),
    (
        "Who wrote Pride and Prejudice?",
        "Jane Austen wrote Pride and Prejudice; it was first published in 1813.",
        "Jane Austen.",
        "A famous English novelist wrote it a long time ago.",
        "Charles Dickens wrote Pride and Prejudice.",
        "Wrong author: Pride and Prejudice is by Jane Austen, not Charles Dickens.",
        "a classic novel",
    ),
    (
        "What is the largest ocean on Earth?",
        "The Pacific Ocean is the largest; it covers about a third of Earth's surface.",
        "The Pacific.",
        "One of the big oceans, the one that covers a lot of the planet.",
        "The Atlantic Ocean is the largest ocean on Earth.",
        "Wrong: the Pacific is the largest ocean; the Atlantic is second.",
        "oceans",
    ),
    (
        "What is the chemical symbol for gold?",
        "The chemical symbol for gold is Au, from the Latin word aurum.",
        "Au.",
        "It is a two-letter symbol from the periodic table.",
        "The chemical symbol for gold is Ag.",
        "Wrong: Ag is silver; gold is Au.",
        "chemistry symbols",
    ),
    (
        "At what temperature does water boil at sea level?",
        "At sea level water boils at 100 degrees Celsius, which is 212 degrees Fahrenheit.",
        "100 degrees Celsius.",
        "When it gets very hot.",
        "Water boils at 90 degrees Celsius at sea level.",
        "Wrong: at sea level water boils at 100 degrees Celsius.",
        "boiling water",
    ),
    (
        "What causes the seasons on Earth?",
        "The tilt of Earth's axis: as Earth orbits the Sun, each hemisphere takes turns leaning toward the "
        "Sun, which gives it more direct sunlight and longer days in summer.",
        "The tilt of Earth's axis.",
        "It is related to the Sun and how Earth moves.",
        "Seasons happen because Earth is much closer to the Sun in summer and farther away in winter.",
        "Wrong: a common myth; the seasons come from the tilt of Earth's axis, which is why the two "
        "hemispheres have opposite seasons.",
        "the seasons",
    ),
    (
        "How many planets are in our solar system?",
        "There are eight planets: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune.",
        "Eight.",
        "Quite a few, including Earth.",
        "There are nine planets, including Pluto.",
        "Outdated: Pluto was reclassified as a dwarf planet in 2006, so there are eight.",
        "the solar system",
    ),
    (
        "What gas do plants take in for photosynthesis?",
        "Plants take in carbon dioxide through their leaves and use sunlight to turn it and water into "
        "sugar, releasing oxygen.",
        "Carbon dioxide.",
        "A gas from the air that they need to grow.",
        "Plants take in oxygen for photosynthesis and release carbon dioxide.",
        "Wrong: photosynthesis takes in carbon dioxide and releases oxygen, not the other way round.",
        "photosynthesis",
    ),
    (
        "What is the capital of Australia?",
        "The capital of Australia is Canberra.",
        None,
        "A city in the south-east of the country.",
        "The capital of Australia is Sydney.",
        "Wrong: Sydney is the largest city, but the capital is Canberra.",
        "Australia",
    ),
    (
        "Who painted the Mona Lisa?",
        "Leonardo da Vinci painted the Mona Lisa in the early 1500s.",
        "Leonardo da Vinci.",
        "A famous Italian painter from a long time ago.",
        "Michelangelo painted the Mona Lisa.",
        "Wrong: the Mona Lisa is by Leonardo da Vinci.",
        "a famous painting",
    ),
    (
        "What is the longest bone in the human body?",
        "The femur, the thigh bone, is the longest bone in the human body.",
        "The femur.",
        "One of the bones in the leg, I believe.",
        "The longest bone in the human body is the spine.",
        "Wrong: the spine is a column of many vertebrae, not one bone; the longest bone is the femur.",
        "human bones",
    ),
    (
        "Which planet is known as the Red Planet?",
        "Mars is called the Red Planet because iron oxide, or rust, in its soil and dust makes it look red.",
        "Mars.",
        "One of the planets near Earth.",
        "Jupiter is known as the Red Planet.",
        "Wrong: the Red Planet is Mars.",
        "planets",
    ),
    (
        "What is the hardest natural material?",
        "Diamond is the hardest natural material; it is a form of pure carbon.",
        "Diamond.",
        "Some kind of very hard stone.",
        "Gold is the hardest natural material.",
        "Wrong: gold is a soft metal; the hardest natural material is diamond.",
        "hard materials",
    ),
    (
        "How many sides does a hexagon have?",
        "A hexagon has six sides and six corners.",
        "Six.",
        "More than a square has.",
        "A hexagon has eight sides.",
        "Wrong: eight sides is an octagon; a hexagon has six.",
        "shapes",
    ),
]

HOW_TO = [
    (
        "How do I boil an egg so the yolk stays soft?",
        "Lower the egg into boiling water, cook it for about 6 minutes, then move it to cold water for a "
        "minute to stop the cooking; the white will be set and the yolk soft.",
        "Boil it for about 6 minutes.",
        "Cook it in water, but not for too long.",
        "Boil the egg for 15 minutes, then let it sit in the hot water.",
        "Bad advice: 15 minutes gives a hard-boiled egg, the opposite of a soft yolk.",
        "boiling eggs",
    ),
    (
        "How do I get a fresh coffee stain out of a cotton shirt?",
        "Rinse the stain from the back with cold water, rub in a little liquid laundry detergent, let it sit "
        "for a few minutes, then wash the shirt as usual and check the stain is gone before drying it.",
        "Rinse it with cold water and wash it.",
        "Try cleaning it with something.",
        "Pour very hot water on it and put the shirt straight in the dryer.",
        "Bad advice: hot water and the heat of the dryer can set the stain for good.",
        "laundry stains",
    ),
    (
        "How do I make a strong password?",
        "Use a long passphrase of four or more random words, or at least 12 mixed characters, make it unique "
        "to each account, and keep it in a password manager.",
        "Make it long and unique.",
        "Pick something hard to guess.",
        "Use your birthday or your pet's name so you never forget it.",
        "Bad advice: birthdays and pet names are among the first things attackers guess.",
        "passwords",
    ),
    (
        "How do I stop a door hinge from squeaking?",
        "Lift the hinge pin out, wipe it clean, coat it with a light oil or silicone spray and tap it back "
        "in; then open and close the door a few times to spread the lubricant.",
        "Put some oil on the hinge.",
        "Do some maintenance on the door.",
        "Spray the hinge with water to loosen it up.",
        "Bad advice: water makes the hinge rust and squeak more; it needs a lubricant.",
        "squeaky doors",
    ),
    (
        "How often should I water a snake plant?",
        "Water a snake plant only when the soil has dried out completely, usually every two to three weeks "
        "and less in winter; too much water rots its roots.",
        "Only when the soil is dry.",
        "Water it when it seems to need it.",
        "Water it every day so the soil always stays soaked.",
        "Bad advice: snake plants rot in wet soil; the soil should dry out between waterings.",
        "houseplants",
    ),
    (
        "How do I keep sliced apples from turning brown?",
        "Toss the slices in a little lemon juice, or soak them for a few minutes in lightly salted water, "
        "then keep them covered in the fridge; the acid or salt slows the browning.",
        "Put some lemon juice on them.",
        "Store them properly.",
        "Leave the slices out in the open air; the air keeps them fresh.",
        "Wrong: air is what browns cut apples; they need lemon juice or salt water and a cover.",
        "cut apples",
    ),
    (
        "How do I make green tea that is not bitter?",
        "Use water that is hot but not boiling, around 80 degrees Celsius, and steep the tea for only 2 to 3 "
        "minutes; boiling water and long steeping pull out the bitter tannins.",
        "Use water that is not quite boiling.",
        "Make it carefully and it will taste better.",
        "Use boiling water and steep it for 10 minutes to get the most flavour.",
        "Bad advice: boiling water and a long steep are exactly what make green tea bitter.",
        "green tea",
    ),
    (
        "How do I start a compost pile at home?",
        "Pick a shady spot or a bin, mix green scraps such as fruit and vegetable peels with brown material "
        "such as dry leaves or cardboard, keep it about as damp as a wrung-out sponge, and turn it every "
        "week or two.",
        "Mix food scraps with dry leaves and turn it now and then.",
        "Put your waste somewhere and wait.",
        "Throw in meat, dairy and oily leftovers and keep the pile sealed airtight.",
        "Bad advice: meat, dairy and oil attract pests, and a sealed pile without air rots and smells "
        "instead of composting.",
        "composting",
    ),
]

PROGRAMMING = [
    (
        "In Python, how do I reverse a list called items?",
        "Call items.reverse() to reverse the list in place, or use items[::-1] to get a new reversed list.",
        "items.reverse()",
        "Python has ways to change the order of a list.",
        "Call items.sort(); that reverses the list.",
        "Wrong: sort() puts the items in ascending order; it does not reverse them.",
        "Python lists",
    ),
    (
        "How do I convert the string '42' to an integer in Python?",
        "Use int('42'), which returns the integer 42; it raises a ValueError if the string is not a valid "
        "number.",
        "int('42')",
        "You need to convert the type somehow.",
        "Use str('42'); that turns it into an integer.",
        "Wrong: str() makes a string; int('42') makes the integer.",
        "Python type conversion",
    ),
    (
        "How do I read a text file line by line in Python?",
        "Open the file in a with block and loop over it: with open('notes.txt') as f, then for line in f, "
        "use line.rstrip(). The with block closes the file for you.",
        "Loop over the file object with a for loop.",
        "Python can read files in various ways.",
        "Call f.read() inside a for loop; each call returns the next line.",
        "Wrong: f.read() returns the whole file at once; loop over the file object to get one line "
        "at a time.",
        "reading files in Python",
    ),
    (
        "What does git pull do?",
        "git pull fetches new commits from the remote branch and merges them into your current local branch; "
        "it is git fetch followed by git merge.",
        "It downloads changes from the remote.",
        "It is a git command for working with remotes.",
        "git pull uploads your local commits to the remote repository.",
        "Wrong: that is git push; git pull brings remote commits into your branch.",
        "git",
    ),
    (
        "In SQL, how do I count the rows in a table called orders?",
        "Run SELECT COUNT(*) FROM orders; it returns the number of rows in the table.",
        "Use COUNT(*).",
        "SQL has functions for that.",
        "Run SELECT SUM(orders); it adds up the rows.",
        "Wrong: SUM adds up the values of a column and orders is a table; COUNT(*) counts rows.",
        "SQL",
    ),
    (
        "What is the difference between a list and a tuple in Python?",
        "A list is mutable, so you can add, remove or change its items; a tuple cannot be changed once "
        "created, which also makes it usable as a dictionary key.",
        "Lists can be changed and tuples cannot.",
        "They are both ways to store several values.",
        "There is no difference; list and tuple are two names for the same type.",
        "Wrong: lists are mutable and tuples are immutable.",
        "Python data types",
    ),
    (
        "How do I get the length of a string s in JavaScript?",
        "Use s.length; it is a property, not a method, so it takes no parentheses.",
        "s.length",
        "Strings have a way to tell you their size.",
        "Call len(s), just as in Python.",
        "Wrong: len() is Python; JavaScript strings have a length property.",
        "JavaScript strings",
    ),
    (
        "How do I make a Python dictionary that maps 'a' to 1 and 'b' to 2?",
        "Write d = {'a': 1, 'b': 2}, or equivalently d = dict(a=1, b=2).",
        "{'a': 1, 'b': 2}",
        "Use a dictionary with those keys.",
        "Write d = ['a': 1, 'b': 2].",
        "Wrong: square brackets make a list, and that line is a syntax error; dictionaries use curly braces.",
        "Python dictionaries",
    ),
]

EXPLAIN = [
    (
        "What is the difference between weather and climate?",
        "Weather is the state of the atmosphere over hours or days, such as today's rain; climate is the "
        "average pattern of weather in a place over many years.",
        "Weather is short term and climate is long term.",
        "They are both about the sky and temperature.",
        "They are the same thing; climate is just a fancier word for weather.",
        "Wrong: weather is the short-term state, climate the long-term average.",
        "weather and climate",
    ),
    (
        "What does a computer's CPU do?",
        "The CPU, or central processing unit, runs the instructions of programs: it fetches each instruction "
        "from memory, decodes it and carries it out, such as arithmetic or moving data.",
        "It runs the instructions of programs.",
        "It is an important part inside the computer.",
        "The CPU stores your files when the computer is turned off.",
        "Wrong: files are kept on the disk or SSD; the CPU executes instructions.",
        "computer hardware",
    ),
    (
        "What is compound interest?",
        "Compound interest is interest paid on both the original amount and the interest already added, so "
        "the balance grows faster each year than with simple interest.",
        "Interest on interest.",
        "It is a kind of interest banks use.",
        "Compound interest means you only ever earn interest on the amount you first put in.",
        "Wrong: that describes simple interest; compound interest also earns interest on past interest.",
        "compound interest",
    ),
    (
        "What is a haiku?",
        "A haiku is a short Japanese poem of three lines with five, seven and five syllables, often about "
        "nature or a season.",
        "A short Japanese poem.",
        "A type of writing.",
        "A haiku is a long rhyming poem with fourteen lines.",
        "Wrong: fourteen lines describes a sonnet; a haiku has three lines of five, seven and five "
        "syllables.",
        "poetry",
    ),
    (
        "Why do we need to sleep?",
        "Sleep lets the body and brain recover: it helps store memories, clears waste from the brain, "
        "repairs tissue and keeps the immune system and mood in balance.",
        "To rest and let the brain recover.",
        "Because we get tired.",
        "We do not really need sleep; it is just a habit people can easily drop.",
        "Wrong and unsafe: sleep is essential, and too little of it harms memory, mood and health.",
        "sleep",
    ),
]


def table_items(family: str, rows: list[tuple]) -> list[Item]:
    return [
        Item(family, topic, q, ideal=ideal, partial=partial, vague=vague, wrong=wrong, wrong_reason=reason)
        for q, ideal, partial, vague, wrong, reason, topic in rows
    ]


# --------------------------------------------------------------------------- answers and rows


def first_sentence(text: str) -> str:
    for stop in (". ", "; ", ": "):
        if stop in text:
            return text.split(stop)[0].rstrip(".;:") + "."
    return text if text.endswith((".", "!", "?")) else text + "."


PROPER = set(NAMES) | {"Jane", "Leonardo", "Mars"}


def lower_first(sentence: str) -> str:
    word = sentence.split()[0]
    return sentence if word in PROPER or word.isupper() else sentence[0].lower() + sentence[1:]


def ramble(item: Item, rng: random.Random) -> str:
    core = first_sentence(item.ideal)
    parts = [rng.choice(RAMBLE_OPEN), core]
    for opener in rng.sample(RAMBLE_REPEAT, 3):
        parts += [opener, lower_first(core)]
    parts.append(rng.choice(RAMBLE_CLOSE))
    return " ".join(parts)


def answer(item: Item, level: int, rng: random.Random, others: list[Item]) -> tuple[str, float, str]:
    """(text, score, reason) of an answer to `item` at quality level 0-5."""
    if level == 5:
        return item.ideal, 5.0, f"Correct, relevant and concise; {item.uses}."
    if level == 4:
        if item.partial and rng.random() < 0.5:
            return item.partial, 4.0, item.partial_reason
        return (
            f"{item.ideal} {rng.choice(FILLERS)}",
            4.5,
            "Correct and relevant, but the closing filler sentence adds nothing.",
        )
    if level == 3:
        return item.vague, 3.0, item.vague_reason
    if level == 2:
        if rng.random() < 0.5:
            brief = " It also ignores the request to keep the answer short." if len(item.context) > 1 else ""
            return (
                ramble(item, rng),
                2.5,
                "Rambling and repetitive: the same sentence is repeated four times with filler, "
                f"burying the answer.{brief}",
            )
        return rng.choice(EVASIVE), 2.0, "Too short to help: does not actually answer the question."
    if level == 1:
        if item.slip and rng.random() < 0.5:
            return item.slip, 1.5, item.slip_reason
        return item.wrong, 1.0, item.wrong_reason
    if rng.random() < 0.5:
        other = rng.choice([o for o in others if o.family != item.family])
        return other.ideal, 0.0, f"Off-topic: answers a question about {other.topic} instead of {item.topic}."
    return (
        rng.choice(CHITCHAT),
        0.5,
        "Does not engage with the question at all: friendly filler with no content.",
    )


def add_turns(item: Item, rng: random.Random) -> None:
    """Give some prompts earlier exchanges: a greeting, and sometimes a request to be brief."""
    draw = rng.random()
    if item.context or draw < 0.5:
        return
    item.context = [(rng.choice(INTROS).format(topic=item.topic), rng.choice(INTRO_REPLIES))]
    if draw > 0.8:
        item.context.append(BRIEF)


def build_rows(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    items = (
        math_items(rng)
        + time_items(rng)
        + note_items(rng)
        + advice_items(rng)
        + writing_items(rng)
        + table_items("knowledge", KNOWLEDGE)
        + table_items("how-to", HOW_TO)
        + table_items("programming", PROGRAMMING)
        + table_items("explain", EXPLAIN)
    )
    rng.shuffle(items)
    rows = []
    for index, item in enumerate(items):
        add_turns(item, rng)
        turns = []
        for human, assistant in item.context:
            turns += [{"role": "human", "content": human}, {"role": "assistant", "content": assistant}]
        turns.append({"role": "human", "content": item.question})
        # Each prompt gets one high, one middle and one low answer; cycling the levels by
        # index puts exactly a quarter of the prompts on each of the 8 combinations.
        levels = (
            5 if index % 2 == 0 else 4,
            3 if index // 2 % 2 == 0 else 2,
            1 if index // 4 % 2 == 0 else 0,
        )
        for level in levels:
            text, score, reason = answer(item, level, rng, items)
            rows.append(
                {
                    "conversation": [*turns, {"role": "assistant", "content": text}],
                    "meta_eval_score": score,
                    "score_reason": reason,
                }
            )
    rng.shuffle(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSONL file")
    parser.add_argument(
        "--seed", type=int, default=SEED, help="random seed (the bundled file uses the default)"
    )
    args = parser.parse_args(argv)
    rows = build_rows(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
