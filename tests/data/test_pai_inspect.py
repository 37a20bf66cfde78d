"""`alpamayo data inspect` on a PhysicalAI-AV root (data/pai_inspect.py), run in-process."""

import json
import shutil

import pytest
from pai_tool import pai_fixture_tool

pytest.importorskip("av")
pytest.importorskip("pyarrow")

from alpamayo_jax import cli  # noqa: E402

fx = pai_fixture_tool()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("pai") / "root"
    fx.make_fixture(out, clips=3, clips_per_chunk=2)  # chunks 0 (2 clips) and 1 (1 clip)
    return out


def test_summary_text(root, capsys):
    assert cli.main(["data", "inspect", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"physical_ai_av: 3 clips in 2 chunk(s) (3 train) at {root}"
    assert lines[1] == "  cameras: 4 of 7 in features.csv present"
    assert "  camera_front_wide_120fov   2/2 chunk file(s)" in lines
    assert "  camera_rear_left_70fov     0/2 chunk file(s)" in lines
    assert "  egomotion                  2/2 chunk file(s)" in lines
    assert lines[-1] == "  reasoning: 2 clips, 3 CoC events"


def test_summary_json(root, capsys):
    assert cli.main(["data", "inspect", str(root), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["format"] == "physical_ai_av" and s["num_clips"] == 3 and s["num_chunks"] == 2
    assert s["splits"] == {"train": 3} and len(s["cameras"]) == 7
    assert s["cameras_present"] == list(fx.WRITTEN_CAMERAS)
    assert s["egomotion"] == {"chunks_present": 2, "chunks": 2}
    assert s["reasoning"]["present"] is True and s["reasoning"]["events"] == 3 and "verified" not in s


def test_verify_reads_every_clip(root, capsys):
    assert cli.main(["data", "inspect", str(root), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "  verified: 3 of 3 clips read at t0 (4 cameras, frames, egomotion, actions)" in out
    assert "FAILED" not in out
    assert cli.main(["data", "inspect", str(root), "--verify", "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)["verified"]
    assert verified == {"clips": 3, "ok": 3, "failed": [], "cameras": list(fx.WRITTEN_CAMERAS)}


def test_verify_names_every_broken_clip(root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    broken = copy / "camera/camera_front_tele_30fov/camera_front_tele_30fov.chunk_0001.zip"
    broken.write_bytes(broken.read_bytes()[:1000])  # truncated download
    (copy / "reasoning/ood_reasoning.parquet").unlink()
    assert cli.main(["data", "inspect", str(copy)]) == 0  # the summary does not open the zips
    assert capsys.readouterr().out.splitlines()[-1] == "  reasoning: absent"
    assert cli.main(["data", "inspect", str(copy), "--verify"]) == 2
    captured = capsys.readouterr()
    clip = fx.clip_id_of(2)
    assert "  verified: 2 of 3 clips read at t0" in captured.out
    assert f"  FAILED {clip}: {broken}: not a readable zip file (File is not a zip file)" in captured.out
    assert "alpamayo data inspect: 1 of 3 clips failed to read" in captured.err


def test_a_root_without_its_registry_is_a_data_error(root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "features.csv").unlink()
    assert cli.main(["data", "inspect", str(copy)]) == 2
    assert f"alpamayo data inspect: {copy / 'features.csv'}: not found; expected a PhysicalAI-AV root" in (
        capsys.readouterr().err
    )


def test_our_shard_datasets_are_inspected_as_before(tmp_path, capsys):
    assert (
        cli.main(["data", "synth", "--out", str(tmp_path), "--num", "2", "--seed", "0", "--workers", "1"])
        == 0
    )
    capsys.readouterr()
    assert cli.main(["data", "inspect", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("train: 2 samples in 1 shard(s), seed 0")
