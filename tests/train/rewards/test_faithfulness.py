"""Faithfulness: numbers and names the prompt backs, and the working shown."""

from __future__ import annotations

import pytest

from posttrain.train.rewards import extract_names, extract_numbers, faithfulness

NOTE = "The Orion Library in Halden opened in 1998. It has 42,000 books and 15 librarians."


def test_repeating_prompt_numbers_beats_inventing_them():
    grounded, invented, vague = faithfulness(
        [NOTE] * 3,
        [
            "The Orion Library in Halden has 42,000 books and 15 librarians.",
            "The Orion Library in Berlin has about 10,000 books and 3 librarians.",
            "It is a library with many books.",
        ],
    )
    assert grounded == 1.0
    assert invented == pytest.approx(2 / 5)  # orion, library supported; berlin, 10000, 3 not
    assert vague == 0.5  # nothing checkable


def test_working_shown_in_any_order_is_supported():
    prompt = "Maya has 12 apples and buys 7 more. Then Liam takes 5 of them. How many does she have?"
    right, wrong, slip = faithfulness(
        [prompt] * 3,
        [
            "Maya has 14 apples now: 12 plus 7 is 19, and after Liam takes 5 there are 14 left.",
            "Maya has 24 apples now.",  # 12 + 7 + 5: two steps from the prompt, never shown
            "12 plus 7 is 20, minus 5 leaves 15.",
        ],
    )
    assert right == 1.0 and wrong == 0.0
    assert slip == pytest.approx(3 / 5)  # 12, 7, 5 supported; 20 and 15 are not


def test_times_percentages_and_decimals():
    assert faithfulness(
        ["My train leaves at 14:30 and it takes 45 minutes to get there."], ["Leave by 13:45."]
    ) == [1.0]
    assert faithfulness(["A $80 jacket is 25% off."], ["25% of $80 is $20, so it costs $60."]) == [1.0]
    assert faithfulness(["Split $7 between 3 people."], ["About $2.33 each."]) == [1.0]
    assert faithfulness(["Split $7 between 3 people."], ["About $2.50 each."]) == [0.0]


def test_no_facts_in_the_prompt_means_nothing_to_contradict():
    assert faithfulness(["how do I boil an egg?"], ["Boil it for 6 minutes in Paris."]) == [0.5]


def test_fact_extraction():
    assert extract_numbers("Pay $3.50 at 9:05 for 42,000 items, 25% off.\n2) next") == [
        (3.5, 0.005),
        (545, 0.5),
        (42000.0, 0.5),
        (25.0, 0.5),
    ]
    assert extract_names("The Orion Library is in Halden. Jane met Liam, I think.\nOK then") == [
        "orion",
        "library",
        "halden",
        "liam",
    ]
