"""Tensors derived from parameters, kept between recurrent steps while the parameters do not change.

A recurrent step at batch 1 is a few hundred tiny operations, and reshaping or exponentiating parameters
(``exp(log_step)``, ``-exp(A_log)``, S5's real-valued ``B`` and ``C`` layouts) is a good share of them. A
``Derived`` recomputes its tensors when any source parameter changes: a new tensor (``load_state_dict`` with
``assign``, ``.double()``, ``.to(device)``) has a new data pointer, and an in-place update (an optimiser step,
``load_state_dict``'s copy) bumps its version counter. With gradients enabled nothing is cached (the derived
tensors must stay in the autograd graph).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class Derived:
    """``get(params, build, *extra)``: ``build()``'s result, rebuilt when ``params`` or ``extra`` change."""

    def __init__(self):
        self._key: tuple | None = None
        self._value = None

    def get(self, params: Sequence[torch.Tensor], build: Callable[[], object], *extra):
        if torch.is_grad_enabled():
            return build()
        key = (*((p.data_ptr(), p._version, p.dtype, p.device) for p in params), *extra)
        if key != self._key:
            self._value, self._key = build(), key
        return self._value
