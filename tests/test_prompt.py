import pytest

from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder, PromptError, find_label_tokens, fit_to_budget, split_template


def test_split_template_requires_each_field_once():
    before, after = split_template(SEED_TEMPLATE)
    assert "{question}" in before and "{answer}" in before
    assert after.endswith("Answer is correct (True/False only):")
    with pytest.raises(PromptError, match="solution"):
        split_template("{question} {answer}")
    with pytest.raises(PromptError, match="follow"):
        split_template("{question} {solution} {answer}")


def test_fit_to_budget_cuts_the_middle_of_the_solution():
    head, solution = list(range(10)), list(range(100, 200))
    new_head, new_solution, cut = fit_to_budget(head, solution, 50)
    assert cut and new_head == head and len(new_head) + len(new_solution) == 50
    assert new_solution[-20:] == solution[-20:]  # the end (\boxed{}) survives
    assert new_solution[:10] == solution[:10]
    assert fit_to_budget(head, solution[:5], 50) == (head, solution[:5], False)


def test_fit_to_budget_cuts_a_huge_head_too():
    head, solution = list(range(1000)), list(range(2000, 2100))
    new_head, new_solution, cut = fit_to_budget(head, solution, 200)
    assert cut and len(new_head) + len(new_solution) == 200
    assert len(new_solution) >= 100 and new_solution[-1] == solution[-1]


def test_encode_keeps_cue_and_solution_end(encoder, tokenizer):
    row = {"question": "How many?", "answer": "7", "solution": "step " * 2000 + "so the answer is \\boxed{7}."}
    (ids,), cut = encoder.encode([row])
    assert cut == 1 and len(ids) == encoder.max_length
    assert ids[0] == tokenizer.bos_token_id
    assert tuple(ids[-len(encoder.labels.cue_ids):]) == encoder.labels.cue_ids
    text = tokenizer.decode(ids)
    assert text.rstrip().endswith("Answer is correct (True/False only):")
    assert "\\boxed{7}." in text


def test_label_tokens_follow_the_cue(encoder, tokenizer):
    labels = encoder.labels
    assert tokenizer.convert_ids_to_tokens([labels.positive_id, labels.negative_id]) == ["True", "False"]




def test_label_tokens_when_the_cue_merges_with_the_word():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "c": 1, "u": 2, "e": 3, ":": 4, "T": 5, "F": 6, ":T": 7, ":F": 8, "cue": 9}
    merges = [("c", "u"), ("cu", "e"), (":", "T"), (":", "F")]
    vocab.update({"cu": 10})
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab, merges)), unk_token="<unk>")
    labels = find_label_tokens(tok, "cue:", "T", "F")
    assert labels.cue_ids == (9,)  # ':' is not part of the prompt: it merged into ':T' / ':F'
    assert (labels.positive_id, labels.negative_id) == (7, 8)


def test_label_words_sharing_a_first_token_fail(tokenizer):
    with pytest.raises(PromptError, match="share their first token"):
        find_label_tokens(tokenizer, "Answer:", "Trueish", "Truely")
    with pytest.raises(PromptError, match="differ"):
        find_label_tokens(tokenizer, "Answer:", "True", "True")


def test_max_length_smaller_than_the_fixed_part_fails(tokenizer):
    with pytest.raises(PromptError, match="fixed part"):
        PromptEncoder(tokenizer, SEED_TEMPLATE, "True", "False", 100)
