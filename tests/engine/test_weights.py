"""Weights files round-trip and refuse anything damaged, foreign or for another architecture."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from fusecli.engine import PSLPT, ModelConfig, load_weights, read_weights_metadata, save_weights
from fusecli.errors import WeightsError


@pytest.fixture
def saved(tmp_path):
    net = PSLPT()
    path = save_weights(net, tmp_path / "w.safetensors", {"training": {"steps": 3}, "note": "x"})
    return net, path


def test_round_trip_keeps_every_tensor_and_the_metadata(saved) -> None:
    net, path = saved
    loaded = load_weights(path)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    metadata = read_weights_metadata(path)
    assert json.loads(metadata["training"]) == {"steps": 3}
    assert metadata["note"] == "x"
    assert ModelConfig.from_json(metadata["architecture"]) == ModelConfig()
    assert len(metadata["tensors_sha256"]) == 64
    assert not loaded.training


def test_no_temporary_file_is_left_behind(saved) -> None:
    _, path = saved
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_flipped_bit_in_the_tensors_is_refused(saved) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum"):
        load_weights(path)


def test_a_truncated_file_is_refused(saved) -> None:
    _, path = saved
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match=str(path.name)):
        load_weights(path)


@pytest.mark.parametrize("content", [b"", b"not weights at all", pickle.dumps({"a": 1})])
def test_non_safetensors_files_are_refused(tmp_path, content) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"w\.safetensors"):
        load_weights(path)


def test_foreign_safetensors_are_refused(tmp_path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not fusecli PSLPT weights"):
        load_weights(path)


def test_another_architecture_is_refused(tmp_path) -> None:
    small = PSLPT(ModelConfig(channels=24))
    path = save_weights(small, tmp_path / "small.safetensors")
    metadata = read_weights_metadata(path)
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    # A header that claims the paper's architecture over tensors of another one.
    metadata["architecture"] = ModelConfig().to_json()
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights(path)


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(tmp_path / "nope.safetensors")
