"""Every failure ends with one `error:` line that names the file and the fix; interruptions say how to
resume (issue #37).

Each row: the case, the command, the message expected (it names the file, line or id and the fix), and
that nothing was lost (the folder's files are as they were, or the rerun resumes). Each runs the real
command line on a copy of tests/data/run_41b6ae0 (a killed run: two steps left) or the GeoQA sample."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "geoqa_sample"


def cli(script: str, argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kw)


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name not in ("run.log", ".lock.json")}


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The error line: exit code 1, no traceback, the last line of stderr."""
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    return last


def data_copy(tmp_path: Path, change) -> Path:
    folder = tmp_path / "geoqa"
    shutil.copytree(SAMPLE, folder)
    change(folder)
    return folder


def recode(path: Path, encoding: str) -> None:
    path.write_text(path.read_text(encoding="utf-8"), encoding=encoding)


def insert_bytes(path: Path, at: int, raw: bytes) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:at] + raw + data[at:])


DATA_CASES = [
    ("a UTF-16 train file", lambda f: recode(f / "train.jsonl", "utf-16"),
     "geoqa/train.jsonl: UTF-16 text or binary data (it has NUL bytes), not UTF-8 text (UTF-16 converts with iconv "
     "-f UTF-16 -t UTF-8 IN > OUT); save the file as UTF-8."),
    ("bytes that are not text in the test file", lambda f: insert_bytes(f / "test.jsonl", 300, b"\xff\x80"),
     "geoqa/test.jsonl: line 16: byte 300 is not UTF-8 text (invalid start byte); save the file as UTF-8."),
]


@pytest.mark.parametrize("case,change,expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_a_data_file_that_is_not_utf8_is_named(case, change, expected, tmp_path):
    data = data_copy(tmp_path, change)
    line = one_error_line(cli("run.py", ["--base_model", str(REPO / "models" / "geosynth-small"), "--geoqa_dir",
                                         str(data), "--dry_run"], tmp_path))
    assert line.endswith(expected)
    assert not (tmp_path / "outputs").exists()


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    data = data_copy(tmp_path, lambda f: recode(f / "train.jsonl", "utf-8-sig"))
    proc = cli("run.py", ["--base_model", str(REPO / "models" / "geosynth-small"), "--geoqa_dir", str(data), "--dry_run"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"data: geoqa in {data}: 30 train / 10 test questions" in proc.stdout


def cut_inside_a_character(path: Path) -> None:
    with path.open("ab") as f:
        f.write('{"id": "x°'.encode()[:-1])  # the first byte of the two of "°"


def cut_mid_line(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def garbage_yaml(path: Path) -> None:
    path.write_text("model: [base_model\nsample: {")


def adapter_without_peft_type(path: Path) -> None:
    config = json.loads(path.read_text())
    del config["peft_type"]
    path.write_text(json.dumps(config))


FOLDER_CASES = [
    ("a run-folder .jsonl cut inside a multi-byte character", "iter_1/test_samples.jsonl", cut_inside_a_character,
     "{f}/iter_1/test_samples.jsonl: line 9: byte 9 of the line is not UTF-8 text (unexpected end of data); fix or "
     "remove that line, or delete the file to redo the step that wrote it."),
    ("a run-folder .jsonl cut mid-line", "iter_1/test_samples.jsonl", cut_mid_line,
     "{f}/iter_1/test_samples.jsonl: line 8: not valid JSON (Expecting ',' delimiter); fix or remove that line, or "
     "delete the file to redo the step that wrote it."),
    ("garbage in state.json", "state.json", lambda p: p.write_text("{garbage"),
     "{f}/state.json: line 1: not valid JSON (Expecting property name enclosed in double quotes); delete it: it "
     "holds only the steps' durations, and the finished steps are kept by their own files."),
    ("garbage in config.yaml", "config.yaml", garbage_yaml,
     "{f}/config.yaml: line 2: not valid YAML (expected ',' or ']', but got ':'); it is the "
     "folder's saved config: restore it from a copy, or start the folder over (run.py --restart, or another "
     "run_name= / out=)."),
    ("bytes that are not text in config.yaml", "config.yaml", lambda p: p.write_bytes(b"\x00\x01model: ["),
     "{f}/config.yaml: UTF-16 text or binary data (it has NUL bytes), not UTF-8 text"),
    ("an adapter_config.json without peft_type", "iter_1/model/adapter_config.json", adapter_without_peft_type,
     "{f}/iter_1/model/adapter_config.json has no peft_type: it is not a PEFT adapter config; its training is marked "
     "done in {f}/iter_1/train_done.json: delete that file and rerun to train it again."),
]


@pytest.mark.parametrize("case,name,damage,expected", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_a_damaged_run_folder_file_is_named_with_the_fix(case, name, damage, expected, saved_run, tmp_path):
    folder, argv = saved_run
    damage(folder / name)
    before = files(folder)
    line = one_error_line(cli("run.py", argv, tmp_path))
    assert expected.format(f=folder) in line
    after = files(folder)
    assert all(after.get(p) == content for p, content in before.items() if p.name not in ("config.yaml", "metrics.json"))


def test_an_output_dir_that_is_a_file_is_refused_before_anything(tmp_path):
    (tmp_path / "taken").write_text("a file")
    for out in ("taken", "taken/below"):
        line = one_error_line(cli("run.py", ["total_iters=0", f"output_dir={tmp_path / out}"], tmp_path))
        assert line == (f"error: output_dir: {tmp_path / 'taken'} is a file, not a folder, so "
                        f"{tmp_path / out / 'r3v-geosynth-geosynth-small'} cannot be made; pass output_dir= a folder "
                        f"you can write to.")


def test_an_output_dir_on_a_read_only_file_system_is_refused(tmp_path, monkeypatch):
    """Mocked: a read-only mount cannot be made here and root writes anywhere, so os.access and statvfs
    answer as they do on a read-only file system."""
    from core import rundir
    from core.io import FileError

    monkeypatch.setattr(rundir.os, "access", lambda path, mode: False)
    monkeypatch.setattr(rundir, "_read_only_fs", lambda path: True)
    with pytest.raises(FileError, match=rf"output_dir: cannot write in {tmp_path} \(a read-only file system\), so "
                                        rf"{tmp_path / 'run'} cannot be made; pass output_dir= a folder you can write to"):
        rundir.check_writable(tmp_path / "run", "output_dir")


def test_an_unexpected_failure_is_one_line_and_its_traceback_goes_to_the_log(tmp_path, capsys):
    from core.cli import run_command
    from core.log import add_file_log

    def bug():
        add_file_log(tmp_path / "run.log")
        return {}["missing"]

    with pytest.raises(SystemExit) as ended:
        run_command(bug, kept="nothing")
    assert str(ended.value) == (f"error: KeyError: 'missing' (an unexpected failure, please report it; the traceback "
                                f"is in {tmp_path / 'run.log'})")
    assert "Traceback" in (tmp_path / "run.log").read_text() and 'return {}["missing"]' in (tmp_path / "run.log").read_text()


def llamafactory_processes(folder: Path) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "llamafactory" in line and str(folder) in line]


@pytest.mark.parametrize("sig,how,code", [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "Ctrl-C", 130)])
def test_an_interrupted_training_stops_its_child_says_how_to_resume_and_resumes(sig, how, code, saved_run, tmp_path):
    folder, argv = saved_run
    for name in ("train_done.json", "test_samples.jsonl", "test_samples.stats.json", "test_select.rank0.jsonl"):
        (folder / "iter_1" / name).unlink()
    shutil.rmtree(folder / "iter_1" / "model")
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), *argv], cwd=tmp_path, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while not llamafactory_processes(folder) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert llamafactory_processes(folder), "".join(lines)[-3000:]
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    reader.join(timeout=10)
    assert "Traceback" not in "".join(lines)
    assert lines[-1].strip() == (
        f"interrupted ({how}) during step iter1/train in {folder}: kept every finished step, and the sampled batches "
        f"or training checkpoints of the step in progress; resume with: python {REPO / 'run.py'} " + " ".join(argv))
    assert not llamafactory_processes(folder)  # the training stopped with it
    assert not (folder / "iter_1" / "train_done.json").exists()
    if sig == signal.SIGINT:
        return  # the resume is the same as after SIGTERM
    resumed = cli("run.py", argv, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (folder / "iter_1" / "train_done.json").is_file() and (folder / "metrics.md").is_file()


def test_ids_in_both_train_and_test_are_a_warning_that_names_them(tmp_path):
    def share(folder: Path) -> None:
        test = json.loads((folder / "test.jsonl").read_text())
        for i, item in enumerate(test[:7]):
            item["id"] = f"train-{i}"
        (folder / "test.jsonl").write_text(json.dumps(test))

    data = data_copy(tmp_path, share)
    proc = cli("run.py", ["--base_model", str(REPO / "models" / "geosynth-small"), "--geoqa_dir", str(data), "--dry_run"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("WARNING 7 id(s) are in both train and test, e.g. train-0, train-1, train-2, train-3, train-4: if they are "
            "the same questions, test accuracy counts questions the model was trained on") in proc.stderr
