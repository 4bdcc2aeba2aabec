import math

import pytest
import torch

from leafdisease.training.losses import FocalLoss, LogitAdjustedLoss, build_loss

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
TARGETS = torch.tensor([0, 2])


def log_softmax_row(row, index):
    return row[index] - math.log(sum(math.exp(v) for v in row))


def test_weighted_cross_entropy_matches_hand_computation():
    weights = torch.tensor([1.0, 2.0, 4.0])
    loss = build_loss("ce", class_weights=weights)(LOGITS, TARGETS)
    first = -log_softmax_row([2.0, 0.0, -1.0], 0)
    second = -log_softmax_row([0.5, 1.5, 0.0], 2)
    assert loss.item() == pytest.approx((1.0 * first + 4.0 * second) / 5.0, rel=1e-6)


def test_focal_loss_matches_hand_computation_and_reduces_to_ce_at_gamma_zero():
    weights = torch.tensor([1.0, 2.0, 4.0])
    gamma = 2.0
    terms = []
    for row, target, weight in (([2.0, 0.0, -1.0], 0, 1.0), ([0.5, 1.5, 0.0], 2, 4.0)):
        log_p = log_softmax_row(row, target)
        terms.append((weight, weight * (1 - math.exp(log_p)) ** gamma * -log_p))
    expected = sum(t for _, t in terms) / sum(w for w, _ in terms)
    assert FocalLoss(weights, gamma=gamma)(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)
    ce = build_loss("ce", class_weights=weights)(LOGITS, TARGETS)
    assert FocalLoss(weights, gamma=0.0)(LOGITS, TARGETS).item() == pytest.approx(ce.item(), rel=1e-6)


def test_logit_adjusted_loss_shifts_logits_by_tau_log_prior():
    counts = [70, 20, 10]
    tau = 1.5
    expected = 0.0
    for row, target in (([2.0, 0.0, -1.0], 0), ([0.5, 1.5, 0.0], 2)):
        adjusted = [v + tau * math.log(c / 100) for v, c in zip(row, counts)]
        expected += -log_softmax_row(adjusted, target) / 2
    loss = LogitAdjustedLoss(counts, tau=tau)(LOGITS, TARGETS)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # A rare true class is penalised more than under plain CE: the point of the adjustment.
    assert loss.item() > build_loss("ce")(LOGITS, TARGETS).item()
