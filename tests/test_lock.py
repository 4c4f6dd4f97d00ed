"""One run per folder (core.rundir.lock_folder): a second run is refused at once and names the holder; a
killed holder leaves no lock, and the next run says whose it took over."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.rundir import HOLDER_FILE, LOCK_FILE, lock_folder

REPO = Path(__file__).resolve().parents[1]


def test_a_second_hold_is_refused_with_the_holder_and_a_release_frees_the_folder(tmp_path):
    first = lock_folder(tmp_path / "run")
    holder = json.loads((tmp_path / "run" / HOLDER_FILE).read_text())
    assert holder["pid"] == os.getpid() and first.took_over is None
    # another process cannot take it (flock is per open file: a second process is the real case, below)
    probe = subprocess.run([sys.executable, "-c", "import sys; from core.rundir import lock_folder; "
                            "lock_folder(sys.argv[1])", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True)
    assert probe.returncode != 0
    assert f"is already in use: another run is working in it (pid {os.getpid()} on host" in probe.stderr
    first.release()
    assert not (tmp_path / "run" / HOLDER_FILE).exists()
    again = lock_folder(tmp_path / "run")
    assert again.took_over is None  # a clean release leaves nothing to take over
    again.release()


def test_a_stale_holder_file_is_taken_over_and_named(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / HOLDER_FILE).write_text(json.dumps({"pid": 999999, "host": "node7", "since": "2026-12-01 10:00:00",
                                                           "command": "run.py --geoqa_dir d"}))
    held = lock_folder(tmp_path / "run")
    assert held.took_over == "pid 999999 on host node7 since 2026-12-01 10:00:00: run.py --geoqa_dir d"
    held.release()


def test_two_copies_of_one_command_then_a_kill(tmp_path):
    """The second copy is refused before it writes anything; SIGKILL the first, and its lock is gone."""
    cmd = [sys.executable, str(REPO / "run.py"), f"output_dir={tmp_path}", "run_name=twice", "data.geosynth_train=16",
           "data.geosynth_test=8", "total_iters=1", "sample.max_new_tokens=16"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder = tmp_path / "twice" / HOLDER_FILE
    try:
        deadline = time.time() + 120
        while not holder.is_file() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert holder.is_file(), "the first run never took the folder"
        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0 and "Traceback" not in second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {tmp_path / 'twice'} is already in use") and f"pid {first.pid} on host" in last
        assert json.loads(holder.read_text())["pid"] == first.pid  # the refused copy changed nothing, not even the holder
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    taken = lock_folder(tmp_path / "twice")  # the kill left no lock: the folder is free, its holder named
    assert taken.took_over.startswith(f"pid {first.pid} on host")
    taken.release()
    assert (tmp_path / "twice" / LOCK_FILE).exists()


def test_restart_keeps_the_lock_it_holds(tmp_path, tiny_model_dir):
    """--restart empties the folder but the lock it holds, so no other run can slip in meanwhile."""
    import run
    from core.config import RunConfig, parse_args

    argv = ["--base_model", str(tiny_model_dir), f"output_dir={tmp_path}", "run_name=r", "data.geosynth_train=8",
            "data.geosynth_test=4", "total_iters=0", "sample.max_new_tokens=8", "sample.num_samples=1"]
    run.main(parse_args(RunConfig, argv).config)
    (tmp_path / "r" / "iter_0" / "junk.txt").write_text("x")
    run.main(parse_args(RunConfig, argv).config, restart=True)
    assert not (tmp_path / "r" / "iter_0" / "junk.txt").exists() and (tmp_path / "r" / "iter_0" / "test_greedy.jsonl").exists()
    assert (tmp_path / "r" / LOCK_FILE).exists() and not (tmp_path / "r" / HOLDER_FILE).exists()  # released at the end
