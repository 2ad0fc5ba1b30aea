"""cl.optim: the hand-written SGD and AdamW step by step against torch.optim's."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_plain_sgd_matches_torch_sgd(weight_decay):
    import copy

    from cl.encoder import PaperEncoder
    from cl.optim import PlainSGD

    torch.manual_seed(0)
    ours = PaperEncoder(1, 28).train()
    ref = copy.deepcopy(ours)
    opt_ours = PlainSGD(ours.parameters(), lr=0.15, weight_decay=weight_decay)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.15, weight_decay=weight_decay)
    for step in range(3):
        x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(step))
        for model, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).sum().backward()
            opt.step()
    for (name, p1), (_, p2) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.allclose(p1, p2, rtol=0, atol=1e-7), name


def test_plain_adamw_matches_torch_adamw():
    import copy

    from cl.encoder import ConvNetEncoder
    from cl.optim import PlainAdamW

    torch.manual_seed(0)
    ours = ConvNetEncoder(1, 28, width=8).train()
    ref = copy.deepcopy(ours)
    opt_ours = PlainAdamW(ours.parameters(), lr=3e-3, weight_decay=5e-4)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=5e-4)
    for step in range(4):
        x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(step))
        lr = 3e-3 * (step + 1) / 4  # scheduled, as training sets it every step
        for model, opt in ((ours, opt_ours), (ref, opt_ref)):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            model(x)[:, 0].sum().backward()
            opt.step()
    for (name, p1), (_, p2) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.allclose(p1, p2, rtol=1e-5, atol=1e-6), name
