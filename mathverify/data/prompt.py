"""Prompt formatting and token-level truncation.

A prompt is three token pieces: ``head`` (instruction, question, answer, up to where the solution
starts), ``solution``, and ``cue`` (the text after the solution, ending with the label cue). The
model scores the label word at the last prompt position, so the label itself is never part of the
input. When a prompt is too long we cut the *middle* of the solution: the cue must survive (the head
reads it) and so must the end of the solution, where ``\\boxed{}`` holds the final answer.
"""

from __future__ import annotations

from dataclasses import dataclass

SEED_TEMPLATE = (
    "Review the provided math question, its solution, and the final answer. Verify the accuracy of "
    "the solution steps and the correctness of the final answer based on the calculations provided.\n"
    "Please analyze the information below and explicitly state 'True' if the solution accurately "
    "solves the problem and the answer matches, or 'False' if it does not. Do not provide additional "
    "information or explanation in your response.\n\n"
    "### Math Question:\n{question}\n\n"
    "### Provided Answer:\n{answer}\n\n"
    "### Detailed Solution:\n{solution}\n\n"
    "Answer is correct (True/False only):"
)
"""The seed report's prompt (CONTEXT.md), without the trailing ``{label}``."""

FIELDS = ("question", "answer", "solution")


class PromptError(ValueError):
    """A template or label-word setting that cannot work; raised before any weight is loaded."""


def split_template(template: str) -> tuple[str, str]:
    """Split a template into (text before ``{solution}``, text after it).

    The part before may use ``{question}`` and ``{answer}``; the part after must be fixed text.
    """
    for field in FIELDS:
        if template.count("{" + field + "}") != 1:
            raise PromptError(f"prompt template must contain {{{field}}} exactly once")
    before, after = template.split("{solution}")
    if "{" in after.replace("{{", "").replace("}}", ""):
        raise PromptError("prompt template: no placeholder may follow {solution}")
    return before, after.replace("{{", "{").replace("}}", "}")


@dataclass(frozen=True)
class LabelTokens:
    """Where the label words sit in the vocabulary, as the template tokenizes them.

    ``cue_ids`` are the prompt's final tokens; ``negative_id``/``positive_id`` are the first tokens of
    the label words right after them. A tokenizer may merge the cue's last character with the word
    (``:True``), in which case ``cue_ids`` is one token shorter than the bare cue's tokenization.
    """

    cue_ids: tuple[int, ...]
    negative_id: int
    positive_id: int


def find_label_tokens(tokenizer, cue_text: str, positive: str, negative: str) -> LabelTokens:
    """Tokenize ``cue + word`` for both words and find the first token of each word.

    Fails clearly when the words would be indistinguishable at the scored position.
    """
    if positive == negative:
        raise PromptError(f"label words must differ, got {positive!r} twice")
    cue = tokenizer(cue_text, add_special_tokens=False)["input_ids"]
    kept, first = [], []
    for word in (negative, positive):
        ids = tokenizer(cue_text + word, add_special_tokens=False)["input_ids"]
        k = 0
        while k < min(len(cue), len(ids)) and cue[k] == ids[k]:
            k += 1
        if k >= len(ids):
            raise PromptError(f"label word {word!r} adds no token after the cue")
        kept.append(k)
        first.append(ids[k])
    if kept[0] != kept[1]:
        raise PromptError(
            f"label words {positive!r}/{negative!r} merge differently with the cue's last token; "
            "choose other words or end the cue with a space or newline"
        )
    if first[0] == first[1]:
        raise PromptError(
            f"label words {positive!r} and {negative!r} share their first token "
            f"({first[0]}): the model could not tell them apart; choose other words"
        )
    return LabelTokens(tuple(cue[: kept[0]]), negative_id=first[0], positive_id=first[1])


def fit_to_budget(head: list[int], solution: list[int], budget: int) -> tuple[list[int], list[int], bool]:
    """Cut ``head`` and ``solution`` so that together they fit ``budget`` tokens.

    The solution's middle goes first (its start and its end survive, half of the room each). The
    head is cut in its middle only if it alone would leave the solution less than half the budget.
    Returns (head, solution, was_truncated).
    """
    if len(head) + len(solution) <= budget:
        return head, solution, False
    head_room = max(budget - len(solution), budget // 2)
    if len(head) > head_room:
        head = _cut_middle(head, head_room)
    return head, _cut_middle(solution, budget - len(head)), True


def _cut_middle(ids: list[int], keep: int) -> list[int]:
    if len(ids) <= keep:
        return ids
    if keep <= 0:
        return []
    tail = (keep + 1) // 2  # the end matters most (\boxed{} lives there)
    return ids[: keep - tail] + ids[len(ids) - tail :]


class PromptEncoder:
    """Turns rows into prompt token ids, ready for the label-token head.

    Args:
        tokenizer: a Hugging Face (fast) tokenizer.
        template: prompt with ``{question}``, ``{answer}``, ``{solution}``; ends with the cue.
        positive: label word for a correct answer.
        negative: label word for a wrong answer.
        max_length: most tokens per prompt, BOS and cue included.
    """

    def __init__(self, tokenizer, template: str, positive: str, negative: str, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.before, after = split_template(template)
        self.labels = find_label_tokens(tokenizer, after, positive, negative)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.max_length = max_length
        self.budget = max_length - len(self.bos) - len(self.labels.cue_ids)
        fixed = len(self.bos) + len(self.labels.cue_ids) + len(self._tokenize([self.before])[0])
        if self.budget < 32 or max_length < fixed + 32:
            raise PromptError(
                f"max_length={max_length} leaves no room for question and solution: the prompt's "
                f"fixed part alone is {fixed} tokens; use max_length >= {fixed + 64}"
            )
        # Cap characters before tokenizing so a 1 MB solution costs no more than a long one.
        self.char_cap = max_length * 12

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _cap(self, text: str) -> str:
        if len(text) <= 2 * self.char_cap:
            return text
        return text[: self.char_cap] + text[-self.char_cap :]

    def encode(self, rows: list[dict]) -> tuple[list[list[int]], int]:
        """Encode rows with ``question``, ``answer``, ``solution`` (strings).

        Returns (token ids per row, number of rows whose text had to be cut).
        """
        heads = [self._cap(self.before.format(question=r["question"], answer=r["answer"])) for r in rows]
        solutions = [self._cap(r["solution"]) for r in rows]
        out, cut = [], 0
        for head, solution in zip(self._tokenize(heads), self._tokenize(solutions)):
            head, solution, was_cut = fit_to_budget(head, solution, self.budget)
            cut += was_cut
            out.append(self.bos + head + solution + list(self.labels.cue_ids))
        return out, cut
