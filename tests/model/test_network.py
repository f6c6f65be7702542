"""The two model forms agree (micrograd-style oracle) and share one checkpoint format."""

from __future__ import annotations

import torch

from model.network import LogReg, build_model, get_linear, log_softmax, set_linear


def test_logreg_matches_sequential_with_the_same_weights() -> None:
    torch.manual_seed(0)
    seq = build_model("sequential")
    hand = build_model("logreg")
    weight, bias = get_linear(seq)
    set_linear(hand, weight, bias)
    x = torch.randn(64, 784) * 3
    torch.testing.assert_close(hand(x), seq(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hand(x.view(64, 28, 28)), seq(x.view(64, 28, 28)))


def test_weights_move_between_forms_both_ways() -> None:
    torch.manual_seed(1)
    hand = LogReg()
    seq = build_model("sequential")
    set_linear(seq, *get_linear(hand))
    back = LogReg()
    set_linear(back, *get_linear(seq))
    torch.testing.assert_close(back.l1_w, hand.l1_w)
    torch.testing.assert_close(back.l1_b, hand.l1_b)


def test_hand_written_log_softmax_is_stable_for_large_activations() -> None:
    x = torch.tensor([[1000.0, 0.0, -1000.0], [5e4, 5e4, 5e4]])
    out = log_softmax(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.log_softmax(x, dim=1))


def test_outputs_are_log_probabilities() -> None:
    model = build_model("logreg")
    out = model(torch.randn(8, 784))
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(8))
