"""User mistakes end in one line `cskd: error: ...`, exit status 2, and nothing half-written."""


import pytest
from conftest import cli, copy_run, one_error_line, write_image_folder

BAD_INPUTS = [
    (["--dataset", "mnist"], "unknown data set 'mnist'; choose one of: cifar100, cub200, digits"),
    (["--model", "vgg"], "unknown model 'vgg'; choose one of:"),
    (["--method", "foo"], "unknown method 'foo'; choose one of: adacos, byot, ce, cskd, cskd_e, ddgsd"),
    (["--preset", "nope"], "unknown preset 'nope'; choose one of:"),
    (["--temperature", "0"], "--temperature must be > 0; got 0.0"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--lambda-cls", "-0.5"], "--lambda-cls must be >= 0; got -0.5"),
    (["--epochs", "0"], "--epochs must be a positive integer; got 0"),
    (["--batch-size", "-4"], "--batch-size must be a positive integer; got -4"),
    (["--momentum", "-0.5"], "--momentum must be in [0, 1); got -0.5"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0; got -1.0"),
    (["--protocol", "authors", "--val-fraction", "0.2"], "--val-fraction 0.2 contradicts --protocol authors"),
    (["--train-per-class", "-2"], "--train-per-class must be >= 0"),
    (["--preset", "cifar100-preact18", "--model", "resnet18", "--dataset", "synthetic"],
     "--model resnet18 is made for 224-px input"),
    (["--dataset", "digits", "--model", "resnet18"],
     "--model resnet18 is made for 224-px input but --dataset digits is 8 px"),
    (["--dataset", "digits", "--sync-bn"], "--sync-bn needs CUDA"),
    (["--dataset", "cub200", "--data-root", "{tmp}/nodata"], "expected training images in"),
    (["--dataset", "cifar100", "--data-root", "{tmp}/nodata"], "CIFAR-100 not found"),
    (["--resume"], "holds no checkpoint"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_one_line_error_and_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--epochs" not in args:
        args = ["--epochs", "1", *args]
    code = cli("train", *args, "--out", out)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("cskd: error: ") and message in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("args,expected", [
    (["train", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc' (see `cskd train --help`)"),
    (["train", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--seed", "-1"], "--seed must be in [0, 2^32 - 1]; got -1"),
    (["train", "--split-seed", str(2**32)], "--split-seed must be in [0, 2^32 - 1]"),
    (["train", "--width", "100000"], "--width must be at most 1024"),
    (["train", "--lr", "inf"], "--lr must be a finite number; got inf"),
    (["train", "--temperature", "nan"], "--temperature must be a finite number"),
    (["train", "--lr-milestones", "0.5", "0.5"], "--lr-milestones must be increasing fractions"),
    (["train", "--method", "ce", "--teacher", "somewhere"], "--teacher applies to --method kd and kd_cskd only"),
    (["train", "--mixed-roots", "a", "b"], "--mixed-roots applies to --dataset mixed only"),
    (["train", "--data-root", ""], "argument --data-root: is empty; give a folder path"),
    (["analyze", "some-run", "--out", ""], "argument --out: is empty; give a folder path"),
    (["predict", " "], "argument RUN: is empty; give a folder path"),
    (["sweep", "--runs", ""], "argument --runs: is empty; give a folder path"),
])
def test_bad_options_give_one_line(args, expected, tmp_path, capsys):
    assert cli(*args, "--out", tmp_path / "run") == 2 if args[0] == "train" else cli(*args) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_an_output_path_that_cannot_be_a_folder_gives_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli("train", "--preset", "digits-small", "--epochs", 1, "--out", blocker / "run") == 2
    assert f"Not a directory: {blocker / 'run'}" in one_error_line(capsys)
    # a newline in the path must not break the message over two lines
    assert cli("train", "--preset", "digits-small", "--epochs", 1, "--out", blocker / "new\nline") == 2
    assert f"Not a directory: {blocker / 'new'} line" in one_error_line(capsys)


@pytest.mark.slow
def test_sweep_refuses_repeats_and_other_settings_before_training(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli("sweep", "--methods", "ce", "--seeds", 0, 0, "--runs", runs) == 2
    assert "names digits-small-ce-e30-s0 more than once" in one_error_line(capsys)
    assert not runs.exists()
    assert cli("sweep", "--methods", "ce", "--seeds", 0, "--epochs", 1, "--runs", runs) == 0
    capsys.readouterr()
    assert cli("sweep", "--methods", "ce", "--seeds", 0, "--epochs", 1, "--val-fraction", 0.2, "--runs", runs) == 2
    assert "holds a run with other settings (--val-fraction 0.1 -> 0.2)" in one_error_line(capsys)


@pytest.mark.slow
def test_unreadable_image_names_the_file_and_leaves_no_run_behind(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", train=6, test=6)
    (root / "train" / "a" / "bad.png").write_text("not an image")
    for cache in ("on", "off"):
        out = tmp_path / f"run-{cache}"
        assert cli("train", "--dataset", "imagefolder", "--data-root", root, "--model", "resnet10", "--epochs", 1,
                   "--batch-size", 4, "--val-fraction", 0.5, "--workers", 0, "--decode-cache", cache,
                   "--out", out, "--no-progress") == 2
        assert f"cannot read image {root / 'train' / 'a' / 'bad.png'}" in one_error_line(capsys)
        assert not out.exists()
    assert not (root / ".cskd-cache").exists()  # no empty cache folder either


@pytest.mark.slow
def test_unfinished_teacher_is_refused(digits_runs, tmp_path, capsys):
    teacher = copy_run(digits_runs["ce"], tmp_path / "teacher")
    (teacher / "summary.json").unlink()
    assert cli("train", "--preset", "digits-small", "--method", "kd", "--teacher", teacher, "--epochs", 1,
               "--out", tmp_path / "student") == 2
    assert "has not finished training (no summary.json)" in one_error_line(capsys)


