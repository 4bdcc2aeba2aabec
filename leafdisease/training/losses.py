"""Losses for long-tailed classification: weighted cross-entropy, focal, logit-adjusted."""
import torch
import torch.nn.functional as F

LOSSES = ("ce", "focal", "logit-adjusted")
FOCAL_GAMMA = 2.0  # Lin et al.'s choice; train.py --focal-gamma
LA_TAU = 1.0  # Menon et al.'s choice; train.py --la-tau


class FocalLoss(torch.nn.Module):
    """Focal loss (Lin et al., ICCV 2017): cross-entropy scaled by (1 - p_t)^gamma, optionally class-weighted.

    Reduced like weighted cross-entropy: sum(w_t * loss_t) / sum(w_t), so gamma=0 equals CrossEntropyLoss.
    """

    def __init__(self, weight=None, gamma=FOCAL_GAMMA, label_smoothing=0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        log_probs = F.log_softmax(logits.float(), dim=1)
        per_sample = F.cross_entropy(logits.float(), targets, reduction="none", label_smoothing=self.label_smoothing)
        true_class_prob = log_probs.gather(1, targets[:, None]).squeeze(1).exp()
        per_sample = (1.0 - true_class_prob).pow(self.gamma) * per_sample
        sample_weights = self.weight[targets] if self.weight is not None else torch.ones_like(per_sample)
        return (sample_weights * per_sample).sum() / sample_weights.sum()


class LogitAdjustedLoss(torch.nn.Module):
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021): CE(logits + tau * log prior, y).

    Training against the prior-shifted logits makes the raw logits estimate a balanced classifier, so
    nothing needs correcting at inference. The prior is the training-split class frequency.
    """

    def __init__(self, class_counts, tau=LA_TAU, weight=None, label_smoothing=0.0):
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float32)
        self.register_buffer("log_prior", torch.log(counts / counts.sum()))
        self.register_buffer("weight", weight)
        self.tau = tau
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        adjusted = logits.float() + self.tau * self.log_prior
        return F.cross_entropy(adjusted, targets, weight=self.weight, label_smoothing=self.label_smoothing)


class HierarchyLoss(torch.nn.Module):
    """`base`(logits, y) + weight x the cross-entropy at each coarser level of the label hierarchy (crop, disease).

    A group's log-probability is the log-sum-exp of its classes' log-probabilities, computed from the class logits,
    so there is no extra head: the disease-level term rewards any of a disease's severities, and a severity class
    with one photo is pulled up with its sibling's photos (its share of the group's probability moves with the
    group). `group_indices`: one LongTensor per level, each class's group there (hierarchy.Hierarchy.groups).
    Reduced like the base loss: with class weights, sum(w_y x term) / sum(w_y).
    """

    def __init__(self, base, group_indices, weight, class_weights=None):
        super().__init__()
        self.base = base
        self.weight = weight
        for level, groups in enumerate(group_indices):
            # 0 where the class is in the group, -inf elsewhere: added to log-probabilities before logsumexp.
            mask = torch.full((len(groups), int(groups.max()) + 1), float("-inf"))
            mask[torch.arange(len(groups)), groups] = 0.0
            self.register_buffer(f"mask_{level}", mask)
            self.register_buffer(f"groups_{level}", groups.clone())
        self.levels = len(group_indices)
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits, targets):
        log_probs = F.log_softmax(logits.float(), dim=1)
        sample_weights = (self.class_weights[targets] if self.class_weights is not None
                          else torch.ones_like(targets, dtype=log_probs.dtype))
        extra = log_probs.new_zeros(())
        for level in range(self.levels):
            mask, groups = getattr(self, f"mask_{level}"), getattr(self, f"groups_{level}")
            group_log_probs = torch.logsumexp(log_probs[:, :, None] + mask[None], dim=1)
            nll = -group_log_probs.gather(1, groups[targets][:, None]).squeeze(1)
            extra = extra + (sample_weights * nll).sum() / sample_weights.sum()
        return self.base(logits, targets) + self.weight * extra


def build_loss(name, class_weights=None, class_counts=None, label_smoothing=0.0, focal_gamma=FOCAL_GAMMA, tau=LA_TAU):
    """The training criterion; `class_weights` is a float tensor (or None for unweighted)."""
    if name == "ce":
        return torch.nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(weight=class_weights, gamma=focal_gamma, label_smoothing=label_smoothing)
    if name == "logit-adjusted":
        return LogitAdjustedLoss(class_counts, tau=tau, weight=class_weights, label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {name}")
