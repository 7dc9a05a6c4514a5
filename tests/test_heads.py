import torch

from mathverify.model.heads import ClassifierHead, LabelTokenHead, last_positions


def test_last_positions_picks_the_last_real_token():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    out = last_positions(hidden, torch.tensor([2, 4]))
    assert torch.equal(out, torch.stack([hidden[0, 1], hidden[1, 3]]))


def test_label_token_logits_equal_full_vocab_logits(tiny_path, encoder):
    """The two-row product is exactly the full lm_head output at the label ids."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32).eval()
    rows = [{"question": f"Q{i}?", "answer": str(i), "solution": "x " * (5 + 7 * i)} for i in range(3)]
    ids, _ = encoder.encode(rows)
    width = max(map(len, ids))
    input_ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    lengths = mask.sum(1)
    head = LabelTokenHead(encoder.labels.negative_id, encoder.labels.positive_id)
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        ours = head(last_positions(hidden, lengths), model.get_output_embeddings())
        full = model(input_ids=input_ids, attention_mask=mask).logits  # [B, T, V]
    expected = full[torch.arange(3), lengths - 1][:, [encoder.labels.negative_id, encoder.labels.positive_id]]
    assert ours.shape == (3, 2)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_classifier_head_starts_neutral():
    head = ClassifierHead(8)
    logits = head(torch.randn(4, 8))
    assert torch.equal(logits, torch.zeros(4, 2))
    assert sum(p.numel() for p in head.parameters()) == 18


def test_the_verifier_bounds_its_evidence_head_defect_features(tiny_path):
    """The module builds its evidence head with ``evidence.index.LOWERING``: a row with a defect
    flag never scores above the same row without it, whatever the head's weights."""
    from mathverify.evidence.index import FEATURES, LOWERING, N_FEATURES
    from mathverify.model.module import VerifierModule

    module = VerifierModule(backbone=tiny_path, evidence=True)
    module.build(torch.device("cpu"))
    head = module.evidence_head
    assert head.lowering == LOWERING and {FEATURES[i] for i in LOWERING} == {"other_form", "own_flawed"}
    torch.manual_seed(0)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    clean = torch.rand(256, N_FEATURES)
    clean[:, list(LOWERING)] = 0
    flagged = clean.clone()
    flagged[:, list(LOWERING)] = 1
    assert (head(flagged) <= head(clean)).all()
    assert (head.net(flagged).reshape(-1) > head.net(clean).reshape(-1)).any()  # the weights would raise some
