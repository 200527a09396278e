"""Offline passages about invented entities, so a base model cannot already know the answers.

Any gain after a self-edit's update then comes from the update, not from pretraining.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from posttrain.tasks.knowledge.passages import QA, Passage


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Names are syllables (onset + vowel, a coda at the end) that must contain a rare cluster
# (zh, kh, vr, ae, ei, y, x, au, ou), so they read as names yet are almost never English words
# or known entities. `_REAL_WORDS` lists the few that still are: every generated name that is a
# whole-word token of the SmolLM2 vocabulary, in 600k draws. Names never repeat within a call.
_ONSET = _words("b d f g k l m n p r s t v z br dr gr kr tr vr th sk st zh kh")
_VOWEL = _words("a e i o u a e i o u ae au ei ou y")
_CODA = ("", "", *_words("n r l s k th x m sh rn lk nd"))
_RARE = _words("zh kh vr ae ei y x au ou")
_REAL_WORDS = frozenset(
    _words(
        "bytes detox dusty fauna galax gauge laura laure lauren linux lutein matrix mouse nitrous nonex "
        "palae paulo pauses pesky pyram python rebound redox regex relax restaur risky rouge route saudi "
        "seize souven story study styles stylish system tasty therein thousand trauma traumas truly "
        "trusty tumour venous"
    )
)
_SYMBOL_TAILS = "qvxzjk"

_PROFESSIONS = ("engineer", "chemist", "architect", "sailor", "inventor", "physician", "cartographer")
_PRODUCTS = ("water pumps", "bicycles", "radios", "glass lenses", "looms", "ship engines", "clocks")
_DEVICES = ("water pump", "bicycle", "radio", "lamp", "tractor", "typewriter", "stove")
_ANIMALS = ("frog", "beetle", "finch", "lizard", "moth", "snail", "owl")
_DIRECTIONS = ("north", "south", "east", "west")


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 2), suffix: str = "") -> str:
        while True:
            parts = [
                self.rng.choice(_ONSET) + self.rng.choice(_VOWEL) for _ in range(self.rng.randint(*syllables))
            ]
            parts[-1] += self.rng.choice(_CODA)
            root = "".join(parts)
            if len(root) < 5 or root in _REAL_WORDS or not any(m in root for m in _RARE):
                continue
            if suffix:  # "Vrakeia" not "Vrakeaia"; elements "Zhodium" not "Zhodoium"
                root = root.rstrip("aeiouy") or root
            name = (root + suffix).capitalize()
            if name.lower() not in self.used:
                self.used.add(name.lower())
                return name

    def person(self) -> tuple[str, str]:
        """(full name, surname)."""
        first, last = self.word(), self.word()
        return f"{first} {last}", last


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


@dataclass
class _Draft:
    """A template's output: sentences, direct questions and implication questions."""

    title: str
    sentences: list[str]
    direct: list[tuple[str, list[str]]]
    implied: list[tuple[str, list[str]]]


def _person_passage(names: _Names, rng: random.Random) -> _Draft:
    person, last = names.person()
    town, country, company, city = names.word(), names.word(suffix="ia"), names.word(), names.word()
    born = rng.randint(1780, 1930)
    founded = born + rng.randint(22, 45)
    s = [
        f"{person} is {_a(rng.choice(_PROFESSIONS))} who was born in {born} in {town}, a town in {country}.",
        f"In {founded}, {last} founded the company {company}, which makes {rng.choice(_PRODUCTS)}.",
        f"{company} is headquartered in the city of {city}.",
    ]
    direct = [
        (f"In which year was {person} born?", [str(born)]),
        (f"In which town was {person} born?", [town]),
        (f"Which company did {person} found?", [company]),
        (f"In which year was {company} founded?", [str(founded)]),
    ]
    if rng.random() < 0.6:
        spouse, spouse_last = names.person()
        married = born + rng.randint(20, 40)
        s.append(f"{last} married the painter {spouse} in {married}.")
        direct.append((f"Whom did {person} marry?", [spouse, spouse_last]))
    if rng.random() < 0.6:
        book = names.word()
        s.append(f"{last}'s first book was titled {book}.")
        direct.append((f"What was the title of {person}'s first book?", [book]))
    implied = [
        (f"In which country was the founder of {company} born?", [country]),
        (f"In which city is the company founded by {person} headquartered?", [city]),
    ]
    return _Draft(person, s, direct, implied)


def _town_passage(names: _Names, rng: random.Random) -> _Draft:
    town, country, river = names.word(), names.word(suffix="ia"), names.word()
    founder, founder_last = names.person()
    mayor, mayor_last = names.person()
    founded, population = rng.randint(1100, 1850), rng.randint(20, 990) * 100
    elected = rng.randint(1990, 2022)
    s = [
        f"{town} is a town in the {rng.choice(_DIRECTIONS)} of {country}, on the {river} river.",
        f"It was founded in {founded} by the merchant {founder}.",
        f"Today {town} has a population of {population:,} people.",
        f"Its mayor is {mayor}, who was elected in {elected}.",
    ]
    direct = [
        (f"In which year was {town} founded?", [str(founded)]),
        (f"Who founded the town of {town}?", [founder, founder_last]),
        (f"What is the population of {town}?", [f"{population:,}"]),
        (f"On which river is {town}?", [river]),
        (f"Who is the mayor of {town}?", [mayor, mayor_last]),
    ]
    if rng.random() < 0.6:
        festival = names.word()
        s.append(f"The town is known for a yearly festival called {festival}.")
        direct.append((f"What is the name of the yearly festival in {town}?", [festival]))
    implied = [
        (f"On which river is the town founded by {founder}?", [river]),
        (f"In which country is the town whose mayor is {mayor}?", [country]),
    ]
    return _Draft(town, s, direct, implied)


def _company_passage(names: _Names, rng: random.Random) -> _Draft:
    company, city, country, product = names.word(), names.word(), names.word(suffix="ia"), names.word()
    founder, founder_last = names.person()
    founded, staff = rng.randint(1850, 2010), rng.randint(3, 95) * 100
    s = [
        f"{company} is a company founded in {founded} by the engineer {founder}.",
        f"Its headquarters are in {city}, the capital of {country}.",
        f"The company employs {staff:,} people.",
        f"Its best-selling product is {_a(rng.choice(_DEVICES))} called the {product}.",
    ]
    direct = [
        (f"In which year was {company} founded?", [str(founded)]),
        (f"Who founded {company}?", [founder, founder_last]),
        (f"How many people does {company} employ?", [f"{staff:,}"]),
        (f"What is the best-selling product of {company}?", [product]),
        (f"In which city is {company} headquartered?", [city]),
    ]
    if rng.random() < 0.6:
        rival, bought = names.word(), founded + rng.randint(5, 60)
        s.append(f"In {bought}, {company} bought its rival {rival}.")
        direct.append((f"Which rival did {company} buy in {bought}?", [rival]))
    if rng.random() < 0.5:
        ceo, ceo_last = names.person()
        s.append(f"Its chief executive is {ceo}.")
        direct.append((f"Who is the chief executive of {company}?", [ceo, ceo_last]))
    implied = [
        (f"In which country is the maker of the {product} based?", [country]),
        (f"Who founded the company that makes the {product}?", [founder, founder_last]),
    ]
    return _Draft(company, s, direct, implied)


def _element_passage(names: _Names, rng: random.Random) -> _Draft:
    element = names.word(suffix="ium")
    symbol = element[0] + rng.choice(_SYMBOL_TAILS)
    city, country = names.word(), names.word(suffix="ia")
    chemist, chemist_last = names.person()
    number, found, melts = rng.randint(121, 199), rng.randint(1800, 1990), rng.randint(150, 3200)
    s = [
        f"{element} is a chemical element with the symbol {symbol} and atomic number {number}.",
        f"It was discovered in {found} by the chemist {chemist} at the University of {city}.",
        f"{element} melts at {melts} degrees Celsius.",
        f"Most of the world's {element.lower()} is mined in {country}.",
    ]
    direct = [
        (f"What is the atomic number of {element.lower()}?", [str(number)]),
        (f"What is the chemical symbol of {element.lower()}?", [symbol]),
        (f"Who discovered {element.lower()}?", [chemist, chemist_last]),
        (f"At what temperature in degrees Celsius does {element.lower()} melt?", [str(melts)]),
        (f"In which country is most {element.lower()} mined?", [country]),
    ]
    implied = [
        (f"At the university of which city did the discoverer of {element.lower()} work?", [city]),
        (f"In which year was the element with the symbol {symbol} discovered?", [str(found)]),
    ]
    return _Draft(element, s, direct, implied)


def _species_passage(names: _Names, rng: random.Random) -> _Draft:
    species, forest, country, plant = names.word(), names.word(), names.word(suffix="ia"), names.word()
    animal = rng.choice(_ANIMALS)
    naturalist, naturalist_last = names.person()
    described, length = rng.randint(1750, 1990), rng.randint(2, 90)
    s = [
        f"The {species} {animal} is a species found only in the {forest} forest in {country}.",
        f"It was first described in {described} by the naturalist {naturalist}.",
        f"Adults grow to about {length} centimetres long.",
        f"It feeds mainly on the seeds of the {plant} tree.",
    ]
    direct = [
        (f"In which forest does the {species} {animal} live?", [forest]),
        (f"Who first described the {species} {animal}?", [naturalist, naturalist_last]),
        (f"In which year was the {species} {animal} first described?", [str(described)]),
        (f"How long in centimetres do adult {species} {animal}s grow?", [str(length)]),
        (f"The seeds of which tree does the {species} {animal} eat?", [plant]),
    ]
    if rng.random() < 0.5:
        nickname = names.word()
        s.append(f"Local people call it the {nickname}.")
        direct.append((f"What do local people call the {species} {animal}?", [nickname]))
    implied = [
        (f"In which country does the {animal} described by {naturalist} live?", [country]),
        (f"In which forest does the {animal} that eats {plant} seeds live?", [forest]),
    ]
    return _Draft(f"{species} {animal}", s, direct, implied)


_TEMPLATES = (_person_passage, _town_passage, _company_passage, _element_passage, _species_passage)


def generate_fictional_passages(n: int, seed: int) -> list[Passage]:
    """`n` passages about invented people, towns, companies, elements and species.

    Each passage has 3-6 sentences and 3-5 questions whose gold answers are spans of the
    passage (a name, number or year); one question per passage needs a light implication
    across two sentences ("In which country was the founder of X born?"). Names never repeat
    within one call. Deterministic per seed; passage ids are `fict-<seed>-<index>`, so
    passages from different seeds never share ids (their names may, rarely, coincide).
    """
    rng = random.Random(seed)
    names = _Names(rng)
    passages = []
    for i in range(n):
        draft = _TEMPLATES[i % len(_TEMPLATES)](names, rng)
        n_questions = rng.randint(3, 5)
        chosen = [rng.choice(draft.implied)]
        # Skip direct questions with the implied one's answer: the pair would test one fact twice.
        direct = [d for d in draft.direct if d[1] != chosen[0][1]]
        chosen += rng.sample(direct, min(n_questions - 1, len(direct)))
        rng.shuffle(chosen)
        pid = f"fict-{seed}-{i:04d}"
        questions = [QA(f"{pid}-q{k}", q, answers) for k, (q, answers) in enumerate(chosen)]
        passages.append(Passage(pid, draft.title, " ".join(draft.sentences), questions))
    return passages
