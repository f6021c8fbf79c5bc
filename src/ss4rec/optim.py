"""Parameter groups: weight decay on weight matrices only."""

from __future__ import annotations

from torch import nn

#: state-space parameters that must never be decayed (S5 and Mamba names)
SSM_PARAMETERS = frozenset({"Lambda", "log_step", "A_log", "D"})


def decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight matrices decay; biases, norms (1-D) and SSM parameters do not."""
    return parameter.dim() >= 2 and name.rsplit(".", 1)[-1] not in SSM_PARAMETERS


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups (decayed, not decayed); empty groups are dropped."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (decay if decays(name, parameter) else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
