"""The run folder's machinery on its own: atomic writes (umask, full disk, interruptions), the
manifest of cskd's own files, the writer lock, the lazily readable npz and its checksums."""

import errno
import json
import os
import shutil
import signal
import zipfile

import numpy as np
import pytest
from conftest import hold_lock

from cskd.config import TrainConfig
from cskd.errors import UserError
from cskd.runfolder import (
    CHECKPOINT_FORMAT,
    CONFIG_FORMAT,
    DERIVED_FORMAT,
    PREDICTIONS_FORMAT,
    SUMMARY_FORMAT,
    RunFolder,
    predictions_status,
    read_checkpoint,
    read_config,
    read_predictions,
    read_record,
    read_summary,
    read_tsne,
    save_checkpoint,
    write_config,
    write_derived,
    write_predictions,
    write_summary,
)
from cskd.runfolder.npz import NpzError, NpzFile, write_npz
from cskd.runfolder.store import FolderLock, Manifest, atomic_write


def test_atomic_write_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_full_disk_is_one_line_and_the_old_file_stays(tmp_path, monkeypatch, where):
    path = tmp_path / "last.pt"
    path.write_bytes(b"previous")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        writer = full
    else:
        writer = lambda f: f.write(b"new")  # noqa: E731
        monkeypatch.setattr(os, "fsync" if where == "fsync" else "replace", full)
    with pytest.raises(UserError, match=r"no space left to write .*last.pt \(\d+\.\d MiB free\).*previous version"):
        atomic_write(path, writer)
    monkeypatch.undo()
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["last.pt"]  # no temporary file left


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    for exc in (KeyboardInterrupt, SystemExit):
        def boom(f, exc=exc):
            f.write(b"half")
            raise exc

        with pytest.raises(exc):
            atomic_write(path, boom)
        assert path.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]


def test_temporary_files_of_a_killed_writer_are_removed_when_the_folder_is_next_opened(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.writing():
        write_config(run, {"dataset": "x", "model": "m", "method": "ce"}, {}, kind="imported")
    stale = [run.path / ".last.pt.k2j3h4.tmp", run.path / ".cskd" / ".manifest.json.abc.tmp"]
    for p in stale:
        p.write_bytes(b"half a file from a kill -9")
    (run.path / ".notes.txt.tmp").write_text("the user's")  # not a name cskd writes: kept
    with run.writing():
        pass
    assert not any(p.exists() for p in stale) and (run.path / ".notes.txt.tmp").exists()


def test_the_manifest_tells_cskd_files_from_the_users(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.writing():
        write_config(run, {"dataset": "x", "model": "m", "method": "ce"}, {}, kind="imported")
        write_summary(run, {"finished": True})
    assert run.owns("config.json") and run.owns("summary.json")
    assert run.owns("metrics.jsonl")  # absent: nothing to protect
    copied = RunFolder(tmp_path / "copy")
    shutil.copytree(run.path, copied.path)  # copy2: times kept
    assert copied.owns("config.json")
    shutil.rmtree(copied.path)
    shutil.copytree(run.path, copied.path, copy_function=shutil.copyfile)  # new times, same bytes: the checksum decides
    assert copied.owns("config.json") and copied.holds_run()
    (run.path / "summary.json").write_text('{"finished": true}\n')  # changed behind cskd's back
    assert not run.owns("summary.json") and run.foreign_files() == ["summary.json"]
    with run.writing(), pytest.raises(UserError, match="summary.json was not written by cskd .* never replaces"):
        write_summary(run, {"finished": False})
    with run.writing(), pytest.raises(UserError, match="never deletes such a file"):
        run.remove("summary.json")
    assert run.path.joinpath("summary.json").read_text() == '{"finished": true}\n'


def test_a_users_own_config_json_is_not_a_run(tmp_path, capsys):
    from conftest import cli, one_error_line

    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"learning_rate": 3}')
    assert not RunFolder(out).holds_run() and RunFolder(out).foreign_files() == ["config.json"]
    assert cli("train", "--epochs", 1, "--out", out, "--overwrite") == 2
    assert "holds config.json, which cskd did not write" in one_error_line(capsys)
    assert (out / "config.json").read_text() == '{"learning_rate": 3}'


def test_a_folder_without_a_manifest_holds_nothing_of_cskds(tmp_path):
    """Files under cskd's names with no manifest entry are not cskd's, whatever they hold: never
    adopted, never replaced."""
    run = RunFolder(tmp_path / "run")
    with run.writing():
        write_config(run, {"dataset": "x", "model": "m", "method": "ce"}, {}, kind="imported")
        write_summary(run, {"finished": True})
    shutil.rmtree(run.path / ".cskd")
    assert not run.holds_run() and run.foreign_files() == ["config.json", "summary.json"]
    with run.writing(), pytest.raises(UserError, match="summary.json was not written by cskd"):
        write_summary(run, {"finished": False})
    assert not Manifest(run.path).entries


def test_a_users_files_that_resemble_cskds_are_not_adopted(tmp_path, capsys):
    import torch
    from conftest import cli, one_error_line

    for name, content in (("metrics.jsonl", b"my precious notes\n"), ("best.pt", None)):
        folder = tmp_path / name
        folder.mkdir()
        if content is None:
            torch.save({"w": torch.zeros(3)}, folder / name)  # a torch file, but not a cskd checkpoint
        else:
            (folder / name).write_bytes(content)
        before = (folder / name).read_bytes()
        assert not RunFolder(folder).holds_run() and RunFolder(folder).foreign_files() == [name]
        assert cli("train", "--epochs", 1, "--out", folder, "--overwrite") == 2
        assert f"holds {name}, which cskd did not write" in one_error_line(capsys)
        assert (folder / name).read_bytes() == before and not (folder / ".cskd").exists()


def test_one_writer_at_a_time_and_the_lock_dies_with_its_process(tmp_path):
    folder = tmp_path / "run"
    holder = hold_lock(folder, "cskd train --out run --seed 7")
    try:
        with pytest.raises(UserError, match=rf"is being written by PID {holder.pid} \(cskd train --out run --seed 7\)"):
            with FolderLock(folder):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with FolderLock(folder):  # no stale lock after kill -9
            with FolderLock(folder):  # re-entrant in one process
                pass
    finally:
        holder.kill()


def test_npz_arrays_are_memory_mapped_checked_and_never_unpickled(tmp_path):
    path = tmp_path / "a.npz"
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "f": np.asfortranarray(np.ones((2, 3))),
              "empty": np.zeros((0, 5), np.float16), "names": np.array(["a", "bc"])}
    with open(path, "wb") as f:
        write_npz(f, arrays, {"k": [1, 2]})
    z = NpzFile(path)
    assert z.meta == {"k": [1, 2]} and set(z.names()) == set(arrays)
    x = z.array("x")
    assert not x.flags.owndata and not x.flags.writeable  # a view of the file's mapping, read-only
    for name, a in arrays.items():
        assert np.array_equal(z.array(name), a) and z.array(name).dtype == a.dtype
    z.verify()
    with pytest.raises(ValueError, match="object dtype"), open(tmp_path / "o.npz", "wb") as f:
        write_npz(f, {"o": np.array([{"a": 1}], dtype=object)}, {})
    np.savez(tmp_path / "obj.npz", o=np.array([print], dtype=object))
    with pytest.raises(NpzError, match="object array"):
        NpzFile(tmp_path / "obj.npz")
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(5))  # another program's compressed npz still reads
    assert np.array_equal(NpzFile(tmp_path / "c.npz").array("x"), np.arange(5))
    data = path.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(NpzError, match="not a readable npz"):
        NpzFile(tmp_path / "t.npz")
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("x.npy").header_offset
    flipped = bytearray(data)
    flipped[offset + 200] ^= 1
    (tmp_path / "b.npz").write_bytes(bytes(flipped))
    with pytest.raises(NpzError, match="x.npy do not match their checksum"):
        NpzFile(tmp_path / "b.npz").verify()


def test_an_open_npz_reader_keeps_reading_what_it_opened_after_the_file_is_replaced(tmp_path):
    path = tmp_path / "a.npz"
    with open(path, "wb") as f:
        write_npz(f, {"x": np.arange(6, dtype=np.int64)}, {"v": 1})
    z = NpzFile(path)
    with open(tmp_path / "new.npz", "wb") as f:  # other members first: x's bytes move in the new file
        write_npz(f, {"pad": np.zeros(1000, np.uint8), "x": np.arange(100, 106, dtype=np.int64)}, {"v": 2})
    os.replace(tmp_path / "new.npz", path)  # as cskd writes every file
    assert z.array("x").tolist() == list(range(6)) and z.meta == {"v": 1}
    z.verify()
    assert NpzFile(path).array("x").tolist() == list(range(100, 106))


def test_summary_values_are_checked(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    (run.path / "summary.json").write_text('{"format": 2, "test_acc": null, "best_acc": 0.5, "best_epoch": 3}')
    s = read_summary(run)  # a missing number is None
    assert s["test_acc"] is None and (s["best_acc"], s["best_epoch"]) == (0.5, 3)
    for bad in ('{"format": 2, "test_acc": "high"}', '{"format": 2, "best_epoch": 2.5}', "[1, 2]", "{broken"):
        (run.path / "summary.json").write_text(bad)
        with pytest.raises(UserError, match="summary.json"):
            read_summary(run)


# ------------------------------------------------------------------ one format version per kind of file
NEWER = "read it with the newer cskd that wrote it"


def _refusals(path, current: int, older_fix: str, newer_fix: str = NEWER) -> list[tuple[int, str]]:
    """(format, expected message) of an older and a newer file at `path`."""
    return [(v, f"{path} has format {v}; this cskd reads format {current}: {fix}")
            for v, fix in ((current - 1, older_fix), (current + 1, newer_fix))]


def _rewrite_json(path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _imported_run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    with run.writing():
        write_config(run, {"dataset": "x", "model": "m", "method": "ce"}, {}, kind="imported")
    return run


def test_a_config_json_of_another_format_is_refused_naming_both_versions(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.writing():
        write_config(run, TrainConfig().to_dict(), {})
    assert read_config(run) == TrainConfig()
    for version, message in _refusals(run.file("config.json"), CONFIG_FORMAT, "train the run again with this cskd"):
        _rewrite_json(run.file("config.json"), format=version)
        with pytest.raises(UserError) as e:
            read_config(run)
        assert str(e.value) == message
    _rewrite_json(run.file("config.json"), format=None)
    with pytest.raises(UserError, match="config.json records no format version"):
        read_record(run)


def test_a_summary_json_of_another_format_is_refused_naming_both_versions(tmp_path):
    run = _imported_run(tmp_path)
    with run.writing():
        write_summary(run, {"finished": True, "best_acc": 0.5})
    assert read_summary(run)["best_acc"] == 0.5
    for version, message in _refusals(run.file("summary.json"), SUMMARY_FORMAT, "train the run again with this cskd"):
        _rewrite_json(run.file("summary.json"), format=version)
        with pytest.raises(UserError) as e:
            read_summary(run)
        assert str(e.value) == message


def test_a_checkpoint_of_another_format_is_refused_naming_both_versions(tmp_path):
    import torch

    run = RunFolder(tmp_path / "run")
    state = {"model": {"w": torch.zeros(2)}, "config": TrainConfig().to_dict(), "epoch": 0,
             "best": {"acc": 0.5, "epoch": 1}}
    with run.writing():
        write_config(run, TrainConfig().to_dict(), {})
        save_checkpoint(run, "best", state)
    assert read_checkpoint(run, "best")["epoch"] == 0
    fix = "start the run again with --overwrite"
    for version, message in _refusals(run.file("best.pt"), CHECKPOINT_FORMAT, fix):
        torch.save({**torch.load(run.file("best.pt"), weights_only=True), "format": version}, run.file("best.pt"))
        with pytest.raises(UserError) as e:
            read_checkpoint(run, "best")
        assert str(e.value) == message


def test_predictions_and_derived_caches_of_another_format_are_refused_naming_both_versions(tmp_path):
    run = _imported_run(tmp_path)
    arrays = {"logits": np.eye(3, dtype=np.float32), "labels": np.arange(3), "indices": np.arange(3)}
    with run.writing():
        write_predictions(run, "test", arrays, {"checkpoint": "imported", "dataset": "x",
                                                "class_names": ["a", "b", "c"]})
    preds = read_predictions(run, "test")
    with run.writing():
        write_derived(run, "tsne-test.npz", {"coords": np.zeros((3, 2), np.float32), "rows": np.arange(3)},
                      kind="tsne", predictions=preds)
    assert read_tsne(run, "test", preds)[1].tolist() == [0, 1, 2]

    def rewrite(name, version):  # through cskd's writer: the file stays cskd's
        z = NpzFile(run.file(name))
        content = {k: np.array(z.array(k)) for k in z.names()}
        with run.writing():
            run.write(name, lambda f: write_npz(f, content, {**z.meta, "format": version}))

    for version, message in _refusals(run.file("tsne-test.npz"), DERIVED_FORMAT, "it is a cache: recompute it",
                                      "it is a cache: recompute it"):
        rewrite("tsne-test.npz", version)
        with pytest.raises(UserError) as e:
            read_tsne(run, "test", preds)
        assert str(e.value) == message
    fix = "import it again with `cskd import`"
    for version, message in _refusals(run.file("predictions-test.npz"), PREDICTIONS_FORMAT, fix):
        rewrite("predictions-test.npz", version)
        with pytest.raises(UserError) as e:
            read_predictions(run, "test")
        assert str(e.value) == message
        assert predictions_status(run, "test") == ("damaged", message)
