from __future__ import annotations

import json
import re

import pytest

from posttrain.errors import DataError
from posttrain.tasks import knowledge as k

# Common English words (and a few famous names); no invented name may be one of them.
COMMON_WORDS = frozenset(
    str.split(
        """
    the be to of and a in that have it for not on with he as you do at this but his by from they we
    say her she or an will my one all would there their what so up out if about who get which go me
    when make can like time no just him know take people into year your good some could them see other
    than then now look only come its over think also back after use two how our work first well way
    even new want because any these give day most us man woman child world life hand part place case
    week company system program question government number night point home water room mother area
    money story fact month lot right study book eye job word business issue side kind head house
    service friend father power hour game line end member law car city community name president team
    minute idea kid body information school face others level office door health person art war
    history party result change morning reason research girl guy moment air teacher force education
    river town country forest tree seed element metal gold silver iron paris london berlin rome john
    mary peter maker baker lemon melon tiger dragon venus mars model modern major minor metro panel
    laser legal story study style system relax matrix python route mouse sauna fauna trauma
    """
    )
)


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


SQUAD_V1 = {
    "version": "1.1",
    "data": [
        {
            "title": "Kelvosta",
            "paragraphs": [
                {
                    "context": "Kelvosta lies on the Vraun river. It was founded in 1653.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "On which river is Kelvosta?",
                            "answers": [
                                {"text": "Vraun", "answer_start": 21},
                                {"text": "the Vraun river", "answer_start": 17},
                                {"text": "Vraun", "answer_start": 21},
                            ],
                        },
                        {
                            "id": "q2",
                            "question": "When was Kelvosta founded?",
                            "answers": [{"text": "1653", "answer_start": 52}],
                        },
                    ],
                }
            ],
        },
        {
            "title": "Zhodium",
            "paragraphs": [
                {
                    "context": "Zhodium has atomic number 151.",
                    "qas": [
                        {
                            "id": "q3",
                            "question": "What is the atomic number of zhodium?",
                            "answers": [{"text": "151", "answer_start": 26}],
                        }
                    ],
                }
            ],
        },
    ],
}


# ------------------------------------------------------------------ SQuAD reader


def test_read_squad_v1(tmp_path):
    passages = k.read_squad(_write(tmp_path, "v1.json", json.dumps(SQUAD_V1)))
    assert [p.id for p in passages] == ["0-0", "1-0"]
    first = passages[0]
    assert first.title == "Kelvosta"
    assert first.context.startswith("Kelvosta lies")
    assert [q.id for q in first.questions] == ["q1", "q2"]
    assert first.questions[0].answers == ["Vraun", "the Vraun river"]  # deduplicated, order kept
    assert passages[1].questions[0].answers == ["151"]


def test_read_squad_v2_skips_impossible_questions(tmp_path):
    doc = json.loads(json.dumps(SQUAD_V1))
    doc["version"] = "v2.0"
    qas = doc["data"][0]["paragraphs"][0]["qas"]
    qas.append({"id": "imp", "question": "Who is the king?", "answers": [], "is_impossible": True})
    qas[0]["is_impossible"] = False
    # a paragraph holding only impossible questions disappears
    doc["data"][1]["paragraphs"][0]["qas"] = [
        {
            "id": "imp2",
            "question": "Who?",
            "answers": [],
            "plausible_answers": [{"text": "x", "answer_start": 0}],
            "is_impossible": True,
        }
    ]
    passages = k.read_squad(_write(tmp_path, "v2.json", json.dumps(doc)))
    assert [p.id for p in passages] == ["0-0"]
    assert [q.id for q in passages[0].questions] == ["q1", "q2"]


BAD_MISSING_QUESTION = """{"data": [
  {"title": "T",
   "paragraphs": [
     {"context": "Alpha beta.",
      "qas": [
        {"id": "q1", "question": "What?", "answers": [{"text": "Alpha", "answer_start": 0}]},
        {"id": "q2", "answers": [{"text": "beta", "answer_start": 6}]}
      ]}
   ]}
]}
"""


def test_read_squad_bad_file_names_file_line_and_json_path(tmp_path):
    path = _write(tmp_path, "bad.json", BAD_MISSING_QUESTION)
    with pytest.raises(DataError) as err:
        k.read_squad(path)
    assert err.value.line == 7
    assert err.value.field == "data[0].paragraphs[0].qas[1].question"
    assert str(err.value).startswith(f'{path}:7: field "data[0].paragraphs[0].qas[1].question" is missing')


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (
            '{"data": [\n {"paragraphs": [\n  {"context": 5, "qas": []}]}]}',
            3,
            "data[0].paragraphs[0].context",
            "must be a string, got int",
        ),
        (
            '{"data": [\n {"paragraphs": [\n  {"context": "c", "qas": [\n'
            '   {"question": "q?", "answers": []}]}]}]}',
            4,
            "data[0].paragraphs[0].qas[0].answers",
            "not marked is_impossible",
        ),
        ('{"version": "1.1"}', 1, "data", "is missing or not a list"),
        ('{"data": [\n  {"title": "no paragraphs"}\n]}', 2, "data[0].paragraphs", "is missing"),
        ('{"data": [\n  "oops"\n]}', 2, "data[0]", "must be an object"),
        (
            '{"data": [\n {"paragraphs": [{"context": "c", "qas": [\n'
            '   {"question": "q", "answers": [{"text": 3}]}]}]}]}',
            3,
            "data[0].paragraphs[0].qas[0].answers[0].text",
            "must be a string",
        ),
        ('{"data": [\n  {"title": "t",\n   "paragraphs": [ }\n]}', 3, None, "invalid JSON"),
    ],
)
def test_read_squad_bad_files(tmp_path, text, line, field, fragment):
    with pytest.raises(DataError) as err:
        k.read_squad(_write(tmp_path, "bad.json", text))
    assert (err.value.line, err.value.field) == (line, field)
    assert fragment in str(err.value)


def test_read_squad_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        k.read_squad(tmp_path / "nope.json")
    with pytest.raises(DataError, match="no answerable questions"):
        k.read_squad(_write(tmp_path, "empty.json", '{"data": []}'))


def test_squad_round_trip_of_generated_passages(tmp_path):
    passages = k.generate_fictional_passages(7, seed=2)
    back = k.read_squad(k.write_squad(passages, tmp_path / "fict.json"))
    assert [p.context for p in back] == [p.context for p in passages]
    assert [p.title for p in back] == [p.title for p in passages]
    assert [[(q.id, q.question, q.answers) for q in p.questions] for p in back] == [
        [(q.id, q.question, q.answers) for q in p.questions] for p in passages
    ]
    starts = [
        a["answer_start"]
        for art in k.passages_to_squad(passages)["data"]
        for qa in art["paragraphs"][0]["qas"]
        for a in qa["answers"]
    ]
    assert min(starts) >= 0  # every answer is found in its context


def test_load_hf_squad_from_local_data_files(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    data = tmp_path / "squadlike"
    data.mkdir()
    rows = [
        {
            "id": "a",
            "title": "T",
            "context": "C1 text.",
            "question": "q1?",
            "answers": {"text": ["C1", "C1"], "answer_start": [0, 0]},
        },
        {
            "id": "b",
            "title": "T",
            "context": "C1 text.",
            "question": "q2?",
            "answers": {"text": ["text"], "answer_start": [3]},
        },
        {
            "id": "c",
            "title": "U",
            "context": "C2 other.",
            "question": "q3?",
            "answers": {"text": [], "answer_start": []},
        },
        {
            "id": "d",
            "title": "U",
            "context": "C3 more.",
            "question": "q4?",
            "answers": {"text": ["more"], "answer_start": [3]},
        },
    ]
    (data / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    passages = k.load_hf_squad(str(data), split="validation")
    assert [(p.title, p.context) for p in passages] == [("T", "C1 text."), ("U", "C3 more.")]
    assert [[(q.id, q.answers) for q in p.questions] for p in passages] == [
        [("a", ["C1"]), ("b", ["text"])],
        [("d", ["more"])],
    ]
    with pytest.raises(DataError, match="cannot load split 'test'"):
        k.load_hf_squad(str(data), split="test")


# ------------------------------------------------------------------ fictional passages

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_IMPLICATION = re.compile(
    r"founder of|founded by|whose mayor|maker of|company that makes|discoverer of|with the symbol|"
    r"described by|that eats"
)


def test_fictional_passages_are_deterministic_per_seed():
    assert k.generate_fictional_passages(20, seed=5) == k.generate_fictional_passages(20, seed=5)
    a, b = k.generate_fictional_passages(20, seed=5), k.generate_fictional_passages(20, seed=6)
    assert [p.context for p in a] != [p.context for p in b]
    assert not {p.id for p in a} & {p.id for p in b}


def test_fictional_passages_shape_and_answers_in_context():
    passages = k.generate_fictional_passages(100, seed=0)
    assert len(passages) == 100
    assert len({p.id for p in passages}) == 100
    assert len({p.title for p in passages}) == 100
    for p in passages:
        assert 3 <= len(_SENTENCE_END.findall(p.context)) <= 6, p.context
        assert 3 <= len(p.questions) <= 5
        assert len({q.id for q in p.questions}) == len(p.questions)
        assert any(_IMPLICATION.search(q.question) for q in p.questions), p.questions
        for q in p.questions:
            assert q.answers
            for answer in q.answers:
                assert answer in p.context, (answer, p.context)
    # every template is used, in turn
    markers = ("who was born in", "is a town in", "is a company founded", "chemical element", "is a species")
    for i, p in enumerate(passages[:10]):
        assert markers[i % 5] in p.context


def test_fictional_names_are_not_common_words():
    for seed in range(5):
        for p in k.generate_fictional_passages(60, seed=seed):
            for q in p.questions:
                for answer in q.answers:
                    for token in answer.replace(",", "").split():
                        if token.isdigit():
                            continue
                        assert token.lower() not in COMMON_WORDS, (token, p.id)
                        assert len(token) >= 2


def test_fictional_names_are_not_single_tokens_of_the_model_vocabulary(tiny_tokenizer):
    # A word the tokenizer has as one token is one the model has seen often: not a fresh entity.
    names = set()
    for p in k.generate_fictional_passages(200, seed=11):
        for q in p.questions:
            names |= {t for a in q.answers for t in a.split() if t.isalpha() and len(t) > 2}
    assert len(names) > 500
    single = [n for n in names if len(tiny_tokenizer(" " + n, add_special_tokens=False)["input_ids"]) == 1]
    assert single == []


def test_split_passages():
    passages = k.generate_fictional_passages(10, seed=1)
    train, held = k.split_passages(passages, 3, seed=0)
    assert len(train) == 7 and len(held) == 3
    assert {p.id for p in train} | {p.id for p in held} == {p.id for p in passages}
    assert not {p.id for p in train} & {p.id for p in held}
    order = [p.id for p in passages]
    assert [p.id for p in held] == sorted((p.id for p in held), key=order.index)
    assert k.split_passages(passages, 3, seed=0) == (train, held)
    assert k.split_passages(passages, 3, seed=1)[1] != held
    with pytest.raises(ValueError):
        k.split_passages(passages, 11, seed=0)


# ------------------------------------------------------------------ self-edits


PASSAGE = k.Passage(
    "p1",
    "Kelvosta",
    "Kelvosta lies on the Vraun river. It was founded in 1653.",
    [
        k.QA("p1-q0", "On which river is Kelvosta?", ["Vraun"]),
        k.QA("p1-q1", "When was Kelvosta founded?", ["1653"]),
    ],
)


@pytest.mark.parametrize("kind", k.SELF_EDIT_KINDS)
def test_self_edit_prompt_is_compact_and_holds_the_passage(kind):
    messages = k.self_edit_prompt(PASSAGE, kind)
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert PASSAGE.context in content and PASSAGE.title in content
    assert len(content) - len(k.passage_text(PASSAGE)) < 250
    assert k.create_self_edit_prompt(PASSAGE, kind) == messages


def test_self_edit_prompt_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown self-edit kind"):
        k.self_edit_prompt(PASSAGE, "poem")  # type: ignore[arg-type]


def test_self_edit_to_sequences_strips_markers_and_appends_passage():
    completion = (
        "Implications:\n"
        "1. Kelvosta is a town on the Vraun river.\n"
        "\n"
        "2) Kelvosta was founded in 1653.\n"
        "   - The Vraun river flows past Kelvosta.\n"
        "* **Kelvosta** is older than 300 years.\n"
        "• Bullet with dot.\n"
        "(3) Parenthesised number.\n"
        "b) Lettered item.\n"
        "A. Vrell founded Kelvosta.\n"
        "   \n"
        "---\n"
        "1653 was the year Kelvosta was founded.\n"
        "1.5 thousand people visit the Vraun river.\n"
        "2. Kelvosta was founded in 1653.\n"
    )
    seqs = k.self_edit_to_sequences(PASSAGE, completion, "implications")
    assert seqs == [
        "Kelvosta is a town on the Vraun river.",
        "Kelvosta was founded in 1653.",
        "The Vraun river flows past Kelvosta.",
        "Kelvosta is older than 300 years.",
        "Bullet with dot.",
        "Parenthesised number.",
        "Lettered item.",
        "A. Vrell founded Kelvosta.",
        "1653 was the year Kelvosta was founded.",
        "1.5 thousand people visit the Vraun river.",
        "Kelvosta\nKelvosta lies on the Vraun river. It was founded in 1653.",
    ]


def test_self_edit_to_sequences_joins_question_answer_pairs():
    completion = "\n".join(
        [
            "Q: On which river is Kelvosta?",
            "A: Vraun",
            "",
            "Q: When was it founded? A: 1653",
            "A: a stray answer line",
            "3. Q: Who?",
            "Answer: Nobody",
        ]
    )
    seqs = k.self_edit_to_sequences(PASSAGE, completion, "questions_answers")
    assert seqs[:-1] == [
        "Q: On which river is Kelvosta? A: Vraun",
        "Q: When was it founded? A: 1653",
        "A: a stray answer line",
        "Q: Who? Answer: Nobody",
    ]
    assert seqs[-1] == k.passage_text(PASSAGE)


def test_self_edit_to_sequences_on_empty_or_echoed_output():
    assert k.self_edit_to_sequences(PASSAGE, "", "rewrite") == [k.passage_text(PASSAGE)]
    assert k.self_edit_to_sequences(PASSAGE, "\n \n- \n", "facts") == [k.passage_text(PASSAGE)]
    echoed = f"{PASSAGE.context}\nKelvosta is old."
    assert k.self_edit_to_sequences(PASSAGE, echoed, "rewrite") == [
        "Kelvosta is old.",
        k.passage_text(PASSAGE),
    ]


def test_sequences_to_rows_are_language_modelling_rows():
    rows = k.sequences_to_rows(["a b", "  ", "c"])
    assert rows == [{"text": "a b"}, {"text": "c"}]


# ------------------------------------------------------------------ no-context QA and grading


def test_qa_prompts_never_show_the_passage():
    passages = k.generate_fictional_passages(5, seed=3)
    prompts = k.qa_prompts(passages)
    assert len(prompts) == sum(len(p.questions) for p in passages)
    flat = [q for p in passages for q in p.questions]
    for messages, q in zip(prompts, flat, strict=True):
        assert messages == k.qa_prompt(q.question)
        assert q.question in messages[0]["content"]
    for p in passages:
        for messages in prompts:
            assert p.context not in messages[0]["content"]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Answer: Vraun\nBecause...", "Vraun"),
        ("\n\n  The answer is 1653.", "1653."),
        ("A: Kelvosta", "Kelvosta"),
        ("Vraun river", "Vraun river"),
        ("Answers vary", "Answers vary"),
        ("", ""),
    ],
)
def test_clean_prediction(raw, clean):
    assert k.clean_prediction(raw) == clean


def test_grade_hand_made_numbers():
    p2 = k.Passage("p2", "", "Zhodium has atomic number 151.", [k.QA("p2-q0", "Atomic number?", ["151"])])
    preds = ["Answer: the Vraun", "It was 1650", "151 is the number"]
    result = k.grade(preds, [PASSAGE, p2])
    # q0: EM 1, F1 1.  q1: "it was 1650" vs "1653": EM 0, F1 0.
    # q2: "151 is number" vs "151": precision 1/3, recall 1, F1 = 2*(1/3)/(4/3) = 0.5
    assert [r["em"] for r in result["per_question"]] == [1.0, 0.0, 0.0]
    assert [r["f1"] for r in result["per_question"]] == pytest.approx([1.0, 0.0, 0.5])
    assert result["em"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(0.5)
    assert (result["n_questions"], result["n_passages"]) == (3, 2)
    assert result["per_passage"] == [
        {"passage_id": "p1", "em": 0.5, "f1": 0.5, "n_questions": 2},
        {"passage_id": "p2", "em": 0.0, "f1": 0.5, "n_questions": 1},
    ]
    lo, hi = result["ci"]
    assert lo <= result["f1"] <= hi
    assert result["per_question"][0]["prediction"] == "the Vraun"
    assert "judge" not in result
    with pytest.raises(ValueError, match="got 2 predictions for 3 questions"):
        k.grade(preds[:2], [PASSAGE, p2])


def test_grade_with_judge_hook():
    calls = []

    def judge(question, gold, pred):
        calls.append((question, gold, pred))
        return 1.0 if gold[0].lower() in pred.lower() else 0.0

    result = k.grade(["vraun, I think", "no idea"], [PASSAGE], judge=judge)
    assert result["judge"] == 0.5
    assert [r["judge"] for r in result["per_question"]] == [1.0, 0.0]
    assert calls[0] == ("On which river is Kelvosta?", ["Vraun"], "vraun, I think")


def test_evaluate_batches_prompts_through_pred_fn():
    passages = k.generate_fictional_passages(4, seed=9)
    gold = {q.question: q.answers[0] for p in passages for q in p.questions}
    batches = []

    def oracle(prompts):
        batches.append(len(prompts))
        return [gold[m[0]["content"].split("Question: ")[1]] for m in prompts]

    result = k.evaluate(oracle, passages)
    assert batches == [sum(len(p.questions) for p in passages)]
    assert result["em"] == 1.0 and result["f1"] == 1.0

    blank = k.evaluate(lambda prompts: ["I do not know"] * len(prompts), passages)
    assert blank["em"] == 0.0
