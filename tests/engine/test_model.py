"""The PSLPT engine reproduces the authors' network and handles any image size."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file

from fusecli.engine import PSLPT, ModelConfig, from_authors_state_dict
from fusecli.engine.authors import translate_authors_key
from fusecli.engine.layers import log_spaced_relative_coords, relative_position_index
from fusecli.errors import WeightsError
from tests.conftest import REFERENCE_FIXTURE

# The authors' network holds 1,803,712 parameters; 2,352 of them belong to layers its forward
# pass skips (decoder.in_conv and the in_ln/out_ln of ten stages), which we do not build.
AUTHORS_PARAMETERS = 1_803_712
SKIPPED_PARAMETERS = 432 + 10 * 2 * 2 * 48


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    if not REFERENCE_FIXTURE.is_file():
        pytest.skip(f"reference fixture not found at {REFERENCE_FIXTURE}")
    return load_file(str(REFERENCE_FIXTURE))


@pytest.fixture(scope="module")
def reference_net(reference) -> PSLPT:
    state = {
        k.removeprefix("weights."): v for k, v in reference.items() if k.startswith("weights.")
    }
    return from_authors_state_dict(state).eval()


def test_parameter_budget_matches_the_paper() -> None:
    assert PSLPT().num_parameters() == AUTHORS_PARAMETERS - SKIPPED_PARAMETERS


@pytest.mark.parametrize("faf_set", [1, 2])
def test_fuse_reproduces_the_authors_network(reference, reference_net, faf_set) -> None:
    fused = reference_net.fuse(reference["input.a"], reference["input.b"], faf_set, clamp=False)
    expected = reference[f"output.fused_stage{faf_set}"]
    assert (fused - expected).abs().max().item() < 1e-4


def test_training_forward_reproduces_the_authors_network(reference, reference_net) -> None:
    with torch.no_grad():
        fused, recon_a, recon_b = reference_net(reference["input.a"], reference["input.b"], 1)
    for ours, key in [(fused, "train_fused_stage1"), (recon_a, "recon_a"), (recon_b, "recon_b")]:
        assert (ours - reference[f"output.{key}"]).abs().max().item() < 1e-4, key


def test_position_tables_match_the_authors_buffers(reference) -> None:
    prefix = "weights.encoder1.eformer1.g.blocks.0.attn."
    table = reference[prefix + "relative_coords_table"][0]
    index = reference[prefix + "relative_position_index"]
    assert torch.allclose(log_spaced_relative_coords(2), table, atol=1e-6)
    assert torch.equal(relative_position_index(2), index.long())


def test_every_authors_parameter_has_a_place(reference) -> None:
    ours = set(PSLPT().state_dict())
    mapped = {
        translate_authors_key(k.removeprefix("weights."))
        for k in reference
        if k.startswith("weights.")
    }
    assert mapped - {None} == ours


def test_unknown_and_missing_keys_are_listed(reference) -> None:
    state = {
        k.removeprefix("weights."): v for k, v in reference.items() if k.startswith("weights.")
    }
    with pytest.raises(WeightsError, match="not part of the authors"):
        from_authors_state_dict({**state, "extra.weight": torch.zeros(1)})
    del state["fl_former2.proj_out.bias"]
    with pytest.raises(WeightsError, match=re.escape("faf2.bands.3.proj_out.bias")):
        from_authors_state_dict(state)


@pytest.mark.parametrize("size", [(61, 77), (1, 1), (9, 500), (2, 3), (16, 16), (33, 17)])
def test_any_size_gives_the_same_size_without_nan(size) -> None:
    net = PSLPT().eval()
    a, b = torch.rand(2, 1, 1, *size)
    fused = net.fuse(a, b, faf_set=2)
    assert fused.shape == a.shape
    assert torch.isfinite(fused).all()
    assert fused.min() >= 0 and fused.max() <= 1


def test_fuse_many_with_two_sources_equals_fuse() -> None:
    net = PSLPT().eval()
    a, b = torch.rand(2, 2, 1, 40, 24)
    assert torch.equal(net.fuse_many([a, b], faf_set=1), net.fuse(a, b, faf_set=1))


def test_fuse_many_folds_a_stack() -> None:
    net = PSLPT().eval()
    stack = list(torch.rand(4, 1, 1, 32, 48))
    fused = net.fuse_many(stack, faf_set=1)
    assert fused.shape == (1, 1, 32, 48) and torch.isfinite(fused).all()


def test_mismatched_sources_name_both_shapes() -> None:
    net = PSLPT()
    with pytest.raises(ValueError, match=r"\(1, 1, 16, 16\).*\(1, 1, 16, 32\)"):
        net.fuse(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 32))


def test_training_forward_gives_every_parameter_a_gradient() -> None:
    net = PSLPT(ModelConfig())
    a, b = torch.rand(2, 1, 1, 32, 32)
    for faf_set in (1, 2):
        fused, recon_a, recon_b = net(a, b, faf_set)
        (fused.mean() + recon_a.mean() + recon_b.mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_training_forward_refuses_sizes_the_pyramid_cannot_hold() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        PSLPT()(torch.rand(1, 1, 24, 32), torch.rand(1, 1, 24, 32))


def test_training_after_inference_mode_in_the_same_process() -> None:
    # Constants cached while the CLI fused under inference_mode must stay usable by autograd.
    net = PSLPT()
    a, b = torch.rand(2, 1, 1, 32, 48)
    with torch.inference_mode():
        net.fuse(a, b, faf_set=2)
    fused, recon_a, _ = net(a, b, faf_set=2)
    (fused.mean() + recon_a.mean()).backward()
    assert net.faf2.bands[0].proj_out.weight.grad is not None
