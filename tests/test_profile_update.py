"""tools/profile_update.py: the per-op profile of a thread's update, end to end on the fake Atari env, and its
bad input."""
import glob
import json

import pytest

from helpers import cli_env, one_error_line, run

TOOL = "tools/profile_update.py"


def test_profiles_acer_updates_with_replay_and_reports_the_op_types(tmp_path):
    out_json, scratch = tmp_path / "profile.json", tmp_path / "tmp"
    scratch.mkdir()
    code, out, err = run(TOOL, ["--preset", "smoke", "--algorithm", "acer", "--replay-ratio", "4", "--calls", "3",
                                "--top", "5", "--json", out_json, "--keep-trace"], tmp_path,
                         dict(cli_env(), TMPDIR=str(scratch)), "profile", timeout=240)
    assert code == 0, err
    trace_dir = out.split("trace: ", 1)[1].split(" ", 1)[0]  # kept, for TensorBoard's Profile tab
    assert trace_dir.startswith(str(scratch)) and glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    result = json.loads(out_json.read_text())
    assert result["algorithm"] == "acer" and result["rollout"] == [5, 4] and result["calls"] == 3
    assert result["updates_per_call"] > 1  # the replay memory was filled, so replayed updates were profiled
    types = result["op_types_ms"]
    assert result["op_ms_per_call"] > 0 and sum(types.values()) == pytest.approx(result["op_ms_per_call"], rel=0.01)
    assert any("Conv2D" in kind for kind in types) and any("MatMul" in kind for kind in types), types
    assert not any("::" in kind for kind in types), types  # the executor's events enclose the ops: not counted
    assert "op type" in out and "slowest ops" in out
    assert len(out.split("slowest ops")[1].strip().splitlines()) >= 6  # --top 5 rows, the trace, the JSON line


@pytest.mark.parametrize("args, words", [
    (["--calls", "0"], "--calls must be >= 1"),
    (["--top", "-1"], "--top must be >= 0"),
    (["--threads", "0"], "threads"),
])
def test_bad_input_is_one_line(tmp_path, args, words):
    code, _, err = run(TOOL, ["--preset", "smoke", *args], tmp_path, cli_env(), "profile-bad", timeout=120)
    assert code == 2 and words in one_error_line(err)
