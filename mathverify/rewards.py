"""A trained verifier as the reward of an RL trainer (TRL's ``GRPOTrainer`` signature).

    from trl import GRPOConfig, GRPOTrainer
    from mathverify.rewards import verifier_reward

    reward = verifier_reward("demo:best")            # loaded once
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=GRPOConfig(...), train_dataset=prompts)

The callable takes ``(prompts, completions, **kwargs)`` and returns one float per completion:
the verifier's P(True) of the completion as a solution of the prompt's question. Plain-text and
conversational (lists of ``{"role", "content"}`` messages) prompts and completions both work.
The question is the dataset column ``question_column`` when the trainer passes it (its other
columns reach reward functions as keyword arguments), else the prompt text (a conversation's
last user message). The answer is the completion's last ``\\boxed{}`` (or what
``extract_answer`` returns); a completion without one gets ``no_answer_reward``. With
``group_samples`` the completions of one batch are scored in one call, so that the other samples
of a question (and their agreement) count as evidence, as a contest question's rows do.

A caution on ``group_samples`` (the default) during RL: the evidence is the policy's own samples, so a
wrong answer that most samples share is rewarded as a consensus, and the policy is pushed further
towards it (self-consistency's known failure: one generator repeats its own mistakes). Where that
matters (late training, when the samples of a question agree often), pass ``group_samples=False``:
each completion is then judged on its own text, and the reward no longer depends on the batch.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from mathverify.evidence.answers import last_boxed
from mathverify.verifier import Verifier


def message_text(value: Any) -> str:
    """Text of a prompt or completion: a string, or a conversation's last user message (prompts)
    or its assistant messages joined (completions)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        users = [m["content"] for m in value if m.get("role") == "user"]
        assistant = [m["content"] for m in value if m.get("role") == "assistant"]
        if assistant:
            return "\n".join(assistant)
        if users:
            return users[-1]
        return value[-1]["content"] if value else ""
    raise TypeError(f"a prompt or completion must be text or a list of messages, got {type(value).__name__}")


class VerifierReward:
    """The reward callable (see the module docstring); build it with :func:`verifier_reward`."""

    def __init__(self, verifier: Verifier, group_samples: bool = True, question_column: Optional[str] = "question",
                 no_answer_reward: float = 0.0, extract_answer: Optional[Callable[[str], Optional[str]]] = None) -> None:
        self.verifier = verifier
        self.extract_answer = extract_answer or last_boxed
        self.group_samples = group_samples
        self.question_column = question_column
        self.no_answer_reward = no_answer_reward
        self.__name__ = "mathverify_verifier"  # the name TRL logs the reward under

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        given = kwargs.get(self.question_column) if self.question_column else None
        questions = [str(q) for q in given] if given is not None else [message_text(p) for p in prompts]
        rows, scored = [], []
        for position, (question, completion) in enumerate(zip(questions, completions)):
            solution = message_text(completion)
            answer = self.extract_answer(solution)
            if answer is not None and answer.strip() and solution.strip() and question.strip():
                rows.append({"question": question, "solution": solution, "answer": answer})
                scored.append(position)
        rewards = [float(self.no_answer_reward)] * len(completions)
        if not rows:
            return rewards
        if self.group_samples:  # one call: every sample of a question sees the others' answers
            scores = self.verifier.score(rows)
        else:  # each completion alone: no evidence from the other samples
            scores = [self.verifier.score([row])[0] for row in rows]
        for position, score in zip(scored, scores):
            rewards[position] = float(score)
        return rewards


def verifier_reward(path: Union[str, Verifier], *, device: Optional[str] = None, group_samples: bool = True,
                    question_column: Optional[str] = "question", no_answer_reward: float = 0.0,
                    extract_answer: Optional[Callable[[str], Optional[str]]] = None,
                    logs_dir: str = "lightning_logs") -> VerifierReward:
    """A TRL reward function backed by a trained verifier.

    Args:
        path: what :meth:`Verifier.load` takes (export folder, checkpoint, ``RUN:best``), or a
            loaded ``Verifier``.
        device: where the verifier runs (default: the first GPU if there is one).
        group_samples: score the completions of one question together (their agreement counts, so a
            wrong answer most of the policy's samples share is rewarded as a consensus: see the
            module docstring); False scores each completion alone.
        question_column: the dataset column holding the bare question (None: always the prompt).
        no_answer_reward: the reward of a completion without an answer.
        extract_answer: completion text -> its final answer, or None (default: the content of the
            last ``\\boxed{}``, ``mathverify.evidence.answers.last_boxed``).
    """
    verifier = path if isinstance(path, Verifier) else Verifier.load(path, device=device, logs_dir=logs_dir)
    return VerifierReward(verifier, group_samples, question_column, no_answer_reward, extract_answer)
