"""The weight average: its schedule of decays, integer buffers, and state round trip."""

from __future__ import annotations

import pytest
import torch

from fusecli.engine import PSLPT, ModelConfig
from fusecli.train.averaging import WeightAverage


def _tiny() -> PSLPT:
    return PSLPT(ModelConfig(channels=12, num_heads=2, levels=2, cpb_hidden=16))


def test_average_follows_the_warmup_then_the_configured_decay():
    net = _tiny()
    average = WeightAverage(net, decay=0.9)
    name = "encoder1.stem.weight"
    expected = net.state_dict()[name].clone()
    for t in range(1, 30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * t)
        d = min(0.9, (1 + t) / (10 + t))
        assert average.current_decay() == pytest.approx(d)
        average.update(net)
        expected = d * expected + (1 - d) * net.state_dict()[name]
    assert torch.allclose(average.net.state_dict()[name], expected, atol=1e-5)
    # The average lags the network: it moved, but not all the way.
    assert not torch.allclose(average.net.state_dict()[name], net.state_dict()[name])


def test_integer_buffers_are_copied_not_averaged():
    norm = torch.nn.BatchNorm2d(3)
    average = WeightAverage(norm, decay=0.9)
    norm.num_batches_tracked.fill_(7)
    average.update(norm)
    assert int(average.net.num_batches_tracked) == 7


def test_state_round_trips():
    net = _tiny()
    average = WeightAverage(net, decay=0.99)
    average.update(net)
    restored = WeightAverage(_tiny(), decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert (restored.decay, restored.updates) == (0.99, 1)
    for k, v in average.net.state_dict().items():
        assert torch.equal(v, restored.net.state_dict()[k])
    assert not any(p.requires_grad for p in average.net.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_outside_the_open_interval_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_tiny(), decay)
