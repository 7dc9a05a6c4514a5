"""mathverify.rewards: TRL's reward signature, text and conversations, samples of a question scored
together, and the reward inside a real GRPOTrainer step."""

from __future__ import annotations

import pytest

from mathverify.rewards import message_text, verifier_reward
from mathverify.verifier import Verifier

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SAMPLES = ["3 + 4 = \\boxed{7}", "3 * 4 = \\boxed{12}", "He has \\boxed{7} apples.", "I am not sure."]


@pytest.fixture(scope="module")
def verifier(evidence_run):
    return Verifier.load(evidence_run[1], device="cpu")


def test_text_and_conversational_calls_give_the_verifiers_scores(verifier):
    reward = verifier_reward(verifier)
    prompts = [f"Solve: {QUESTION}"] * 4
    plain = reward(prompts=prompts, completions=SAMPLES, question=[QUESTION] * 4)
    rows = [{"question": QUESTION, "solution": s, "answer": a} for s, a in zip(SAMPLES[:3], ("7", "12", "7"))]
    assert plain[:3] == pytest.approx(verifier.score(rows), abs=1e-7)
    assert plain[3] == 0.0  # no \boxed{} answer: no_answer_reward
    chat_prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]] * 4
    chat_completions = [[{"role": "assistant", "content": s}] for s in SAMPLES]
    assert reward(prompts=chat_prompts, completions=chat_completions) == pytest.approx(plain, abs=1e-7)


def test_without_a_question_column_the_prompt_is_the_question(verifier):
    reward = verifier_reward(verifier, no_answer_reward=-1.0)
    prompts = [f"Solve: {QUESTION}"] * 4
    got = reward(prompts=prompts, completions=SAMPLES)
    rows = [{"question": prompts[0], "solution": s} for s in SAMPLES[:3]]
    assert got == pytest.approx(verifier.score(rows) + [-1.0], abs=1e-7)


def test_grouping_lets_the_other_samples_count(verifier):
    together = verifier_reward(verifier)(prompts=[QUESTION] * 3, completions=SAMPLES[:3])
    alone = verifier_reward(verifier, group_samples=False)(prompts=[QUESTION] * 3, completions=SAMPLES[:3])
    assert alone == pytest.approx([verifier.score([{"question": QUESTION, "solution": s}])[0] for s in SAMPLES[:3]],
                                  abs=1e-7)
    assert together != pytest.approx(alone, abs=1e-4)  # the evidence head sees "7" agree twice


def test_message_text_rejects_what_is_not_text():
    assert message_text([{"role": "user", "content": "q"}]) == "q"
    with pytest.raises(TypeError, match="text or a list of messages"):
        message_text(3)


def test_reward_drives_a_real_grpo_step(verifier, tiny_path, tmp_path, monkeypatch):
    trl = pytest.importorskip("trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scored = []
    original = verifier.score

    def spy(rows):
        scores = original(rows)
        scored.extend(scores)
        return scores

    monkeypatch.setattr(verifier, "score", spy)
    # the tiny random policy never writes \boxed{}: its last word is the answer here
    reward = verifier_reward(verifier, extract_answer=lambda text: text.split()[-1] if text.split() else None)
    questions = ["What is 2 + 2?", "What is 3 * 3?"]
    data = datasets.Dataset.from_list([{"prompt": f"Question: {q}\nSolution:", "question": q} for q in questions])
    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                          max_completion_length=8, max_steps=1, report_to="none", use_cpu=True, logging_steps=1,
                          save_strategy="no", seed=0)
    trainer = trl.GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_path), reward_funcs=reward, args=args,
                              train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny_path))
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "reward" in entry)
    assert len(scored) == 4 and all(0.0 < s < 1.0 for s in scored)  # every completion reached the verifier
    assert logged["rewards/mathverify_verifier/mean"] == pytest.approx(sum(scored) / 4, abs=1e-5)


def test_the_default_boxed_answer_path_inside_a_real_grpo_step(verifier, tiny_path, tmp_path, monkeypatch):
    """No ``extract_answer``: the reward reads each completion's last \\boxed{} inside GRPOTrainer.

    A random policy never writes \\boxed{}, so this one's ``generate`` appends fixed completions
    (two per question: one boxed, one without an answer) to the prompts TRL gives it; everything
    after generation (decoding, the reward call, advantages, the loss step) is TRL's own."""
    trl = pytest.importorskip("trl")
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    policy = AutoModelForCausalLM.from_pretrained(tiny_path)
    texts = [" 2 + 2 = \\boxed{4}", " I am not sure.", " 3 * 3 = \\boxed{9}", " 3 + 3 = 6"]
    written = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    width = max(len(w) for w in written)

    def fixed_generate(input_ids=None, **_):
        tails = [written[i % len(written)] + [tokenizer.pad_token_id] * (width - len(written[i % len(written)]))
                 for i in range(input_ids.shape[0])]
        return torch.cat([input_ids, torch.tensor(tails, dtype=input_ids.dtype)], dim=1)

    monkeypatch.setattr(policy, "generate", fixed_generate)
    scored_rows = []
    original = verifier.score
    monkeypatch.setattr(verifier, "score", lambda rows: scored_rows.extend(rows) or original(rows))
    reward = verifier_reward(verifier)  # the default: last \boxed{}, no_answer_reward 0.0
    questions = ["What is 2 + 2?", "What is 3 * 3?"]
    data = datasets.Dataset.from_list([{"prompt": f"Question: {q}\nSolution:", "question": q} for q in questions])
    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                          max_completion_length=width, max_steps=1, report_to="none", use_cpu=True, logging_steps=1,
                          save_strategy="no", seed=0, shuffle_dataset=False)
    trainer = trl.GRPOTrainer(model=policy, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    assert sorted(r["answer"] for r in scored_rows) == ["4", "9"]  # only the boxed completions reached the verifier
    assert all(r["solution"].strip().endswith("}") and r["question"] in questions for r in scored_rows)
    logged = next(entry for entry in trainer.state.log_history if "reward" in entry)
    assert 0.0 < logged["rewards/mathverify_verifier/mean"] < 0.5  # two of four completions got 0.0
