"""`fuse weights`: shipped weights listing, inspection, and the safe authors' import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, load_weights, save_weights
from tests.conftest import REFERENCE_FIXTURE

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(build_app(), ["weights", *args], catch_exceptions=False)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_pickle_carrying_code_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"encoder1.in_conv.1.weight": torch.zeros(1), "x": _RunsCode()}, evil)
    out = tmp_path / "out.safetensors"
    result = _run("convert", str(evil), "-o", str(out))
    assert result.exit_code == 1
    assert "was refused" in result.stderr and "references print" in result.stderr
    assert "this ran" not in capfd.readouterr().out + result.output
    assert not out.exists()


def test_junk_and_non_state_dicts_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    result = _run("convert", str(junk), "-o", str(tmp_path / "o.safetensors"))
    assert result.exit_code == 1 and "not a readable PyTorch checkpoint" in result.stderr
    listing = tmp_path / "list.pth"
    torch.save([1, 2], listing)
    result = _run("convert", str(listing), "-o", str(tmp_path / "o.safetensors"))
    assert result.exit_code == 1 and "does not hold a state dict" in result.stderr


def test_the_authors_state_dict_converts_to_loadable_weights(tmp_path: Path) -> None:
    if not REFERENCE_FIXTURE.is_file():
        pytest.skip(f"reference fixture not found at {REFERENCE_FIXTURE}")
    reference = load_file(str(REFERENCE_FIXTURE))
    state = {
        f"module.{k.removeprefix('weights.')}": v
        for k, v in reference.items()
        if k.startswith("weights.")
    }
    checkpoint = tmp_path / "two_fuse_rule.pth"
    torch.save({"state_dict": state}, checkpoint)
    out = tmp_path / "pslpt.safetensors"
    result = _run("convert", str(checkpoint), "-o", str(out))
    assert result.exit_code == 0, result.output
    net = load_weights(out)
    with torch.no_grad():
        fused = net.fuse(reference["input.a"], reference["input.b"], faf_set=1, clamp=False)
    torch.testing.assert_close(fused, reference["output.fused_stage1"], atol=1e-4, rtol=1e-4)
    shown = json.loads(_run("show", str(out), "--json").stdout)
    assert shown["training"]["source"] == "converted from two_fuse_rule.pth"
    assert len(shown["file_sha256"]) == 64
    again = _run("convert", str(checkpoint), "-o", str(out))
    assert again.exit_code == 1 and "--overwrite" in again.stderr


def test_show_lists_checksums_and_training_summary(tmp_path: Path) -> None:
    path = save_weights(PSLPT(), tmp_path / "w.safetensors", {"stage": 2, "step": 1000})
    record = json.loads(_run("show", str(path), "--json").stdout)
    assert record["training"] == {"stage": "2", "step": "1000"}
    assert record["architecture"]["channels"] == 48
    table = _run("show", str(path)).stdout
    assert "tensors_sha256" in table and "training.step" in table


def test_listing_works_with_or_without_shipped_weights() -> None:
    result = _run()
    assert result.exit_code == 0
    records = json.loads(_run("--json").stdout)
    if records:
        assert all(len(r["file_sha256"]) == 64 for r in records)
    else:
        assert "no weights are shipped" in result.stdout
