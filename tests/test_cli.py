"""The command line: option checks before any work, the demo, and fit/transform on image files."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _image_folders import digit_array, write_digit_folder

import skclusterfit
from skclusterfit import NetClassifier, cli
from skclusterfit.cli._demo import run as run_demo
from skclusterfit.data import ImageFiles

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def ctrl_c_as_in_a_terminal():
    """SIGINT handled as in a terminal, even when the tests were started with it
    ignored (``pytest &`` in a script): the commands these tests start inherit it."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def no_work(monkeypatch):
    """Make any start of real work fail the test: options must be refused first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr("skclusterfit.cli._demo.run", forbidden)
    monkeypatch.setattr("skclusterfit.cli._image_folder.fit_from_args", forbidden)
    monkeypatch.setattr("skclusterfit.cli._image_folder.transform_from_args", forbidden)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--K", "1"], "argument --K: 1 must be >= 2"),
        (["demo", "--K", "1"], "argument --K: 1 must be >= 2"),
        (["--noise", "1.5"], "argument --noise: 1.5 must be < 1"),
        (["--noise", "abc"], "argument --noise: 'abc' is not a number"),
        (["--K", "5000"], "5000 clusters need at least as many training samples"),
        (["--teacher-epochs", "0"], "argument --teacher-epochs: 0 must be >= 1"),
        (["--device", "tpu"], "argument --device: device='tpu' is not a device"),
        (["fit", "/no/such/folder", "--out", "x"], "argument IMAGES: '/no/such/folder'"),
        (["fit", ".", "--out", "x", "--K", "1"], "argument --K: 1 must be >= 2"),
        (["fit", ".", "--out", "x", "--teacher", "resnet5O"], "argument --teacher: 'resnet5O'"),
        (["fit", ".", "--out", "x", "--weights", "/no/w.pth"], "file '/no/w.pth' does not exist"),
        (["fit", ".", "--out", "x", "--weights", "IMAGENET9K"], "argument --weights"),
        (["fit", ".", "--out", "x", "--mean", "0.5"], "--mean and --std go together"),
        (["fit", ".", "--out", "x", "--size", "100", "--crop", "224"], "--crop 224 is larger"),
        (["fit", ".", "--out", "x", "--num-workers", "-1"],
         "argument --num-workers: -1 must be >= 0"),
        (["fit", "."], "the following arguments are required: --out"),
        (["transform", "/no/model", "."], "argument MODEL: '/no/model' is not an existing file"),
        # a read-only place (sysfs refuses new files even to root): refused before any work
        (["fit", ".", "--out", "/sys/skclusterfit-out"],
         "argument --out: cannot write '/sys/skclusterfit-out' (in '/sys')"),
        (["transform", os.path.join(REPO, "setup.cfg"), ".", "--out", "/sys/features.npy"],
         "argument --out: cannot write '/sys'"),
        (["fit", ".", "--out", "x", "--teacher", "runs/teacher.skcf"],
         "argument --teacher: 'runs/teacher.skcf' does not exist"),
        (["fit", ".", "--out", "x", "--weights", os.path.join(REPO, "setup.cfg")],
         "is not a state dict that torch.load can read without running code"),
    ],
)
def test_bad_options_are_refused_before_any_work(argv, message, no_work, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "weights_only=False" not in err and "Traceback" not in err


def test_unavailable_default_weights_are_refused_before_the_scan(no_work, monkeypatch,
                                                                  tmp_path, capsys):
    """Offline, the default teacher's weights: one line in the CLI's words, no scan."""
    import urllib.error

    import torch
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    monkeypatch.setattr("skclusterfit.data.ImageFiles.check_decode",
                        lambda *a, **k: pytest.fail("images scanned before the weights check"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage:")  # argparse's usage, then one line
    assert "argument --weights: resnet50's weights 'auto' (ResNet50_Weights.IMAGENET1K_V2)" \
        in err[1]
    assert "could not be downloaded ([Errno -2] Name or service not known)" in err[1]
    assert err[1].endswith("download resnet50-11ad3fa6.pth where there is network access "
                           "and pass --weights PATH")
    assert not os.path.exists(tmp_path / "out")


def test_options_of_0_1_still_work_hidden_and_warned(tmp_path, capsys):
    """--epochs, --seed, --workers, --resize: the estimators' names now, the old
    spellings as hidden aliases that warn."""
    old = cli.parse_args(["fit", str(tmp_path), "--out", str(tmp_path / "o"), "--teacher",
                          "cnn", "--epochs", "3", "--seed", "4", "--workers", "1",
                          "--resize", "64"])
    err = capsys.readouterr().err
    for before, after in (("--epochs", "--max-epochs"), ("--seed", "--random-state"),
                          ("--workers", "--num-workers"), ("--resize", "--size")):
        assert f"warning: {before} is deprecated since 0.2" in err and f"use {after}." in err
    new = cli.parse_args(["fit", str(tmp_path), "--out", str(tmp_path / "o"), "--teacher",
                          "cnn", "--max-epochs", "3", "--random-state", "4",
                          "--num-workers", "1", "--size", "64"])
    assert capsys.readouterr().err == ""
    # the same settings; only the command line, as typed, differs
    assert old.command_line != new.command_line
    assert vars(old) | {"command_line": None} == vars(new) | {"command_line": None}
    assert (new.max_epochs, new.random_state, new.num_workers, new.size) == (3, 4, 1, 64)
    demo = cli.parse_args(["demo", "--seed", "5"])
    assert demo.random_state == 5 and "--seed is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--max-epochs" in text and "--epochs" not in text.replace("--max-epochs", "")


def test_fit_folder_arguments_of_0_1_warn(monkeypatch, tmp_path):
    from skclusterfit.cli import _image_folder

    seen = {}

    def stop(images, settings, out=None, *, num_workers=0, verbose=0, min_images=1):
        seen.update(settings, num_workers=num_workers)
        raise RuntimeError("stop before any work")

    monkeypatch.setattr(_image_folder, "read_images", stop)
    with pytest.warns(FutureWarning, match=r"fit_folder\((workers|resize)=...\) is "
                                           r"deprecated.*use (num_workers|size)="):
        with pytest.raises(RuntimeError, match="stop before"):
            cli.fit_folder(str(tmp_path), str(tmp_path / "o"), teacher="cnn", workers=3,
                           resize=40)
    assert seen["num_workers"] == 3 and seen["size"] == 40
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'epoch'"):
        cli.fit_folder(str(tmp_path), str(tmp_path / "o"), epoch=3)
    with pytest.warns(FutureWarning, match=r"transform_folder\(workers=...\)"):
        with pytest.raises(Exception):
            cli.transform_folder(str(tmp_path / "no_model"), str(tmp_path), workers=0)


def test_help_shows_defaults_and_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "(default: 0.8)" in text and "(default: 100)" in text
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "(default: auto)" in text and "--num-workers" in text and "--labels" in text
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"skclusterfit {skclusterfit.__version__}"


def test_no_sub_command_is_the_demo():
    assert cli.parse_args([]).command == "demo"
    args = cli.parse_args(["--K", "20", "--noise", "0.5"])
    assert (args.command, args.K, args.noise) == ("demo", 20, 0.5)


@pytest.mark.slow  # the demonstration trains a teacher and a student on the digits
def test_demo_prints_the_table():
    args = cli.parse_args(
        ["demo", "--K", "20", "--teacher-epochs", "3", "--student-epochs", "2", "--noise", "0.5"]
    )
    out = io.StringIO()
    results = run_demo(args, out=out)
    text = out.getvalue()
    assert "N_pre" in text and "N_cf" in text and "linear-probe accuracy" in text
    assert 0.1 < results["N_pre"] <= 1 and 0.1 < results["N_cf"] <= 1
    # The figures' last digits depend on the thread count: it is printed beside them.
    import torch

    assert f"torch threads={torch.get_num_threads()}" in text


# -- fit and transform on a folder of image files --------------------------------------------
TRAIN = list(range(240))
NEW = list(range(1000, 1024))


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A small CNN teacher trained (briefly) on 32x32 RGB digits, saved by skclusterfit."""
    from sklearn.datasets import load_digits

    y = load_digits().target[:300]
    teacher = NetClassifier(max_epochs=3, random_state=0).fit(digit_array(range(300)), y)
    path = str(tmp_path_factory.mktemp("teacher") / "teacher.skcf")
    teacher.save(path)
    return path


def fit_argv(images, out, teacher_file, labels=None, epochs=2):
    argv = ["fit", images, "--teacher", teacher_file, "--K", "10", "--max-epochs",
            str(epochs), "--batch-size", "32", "--num-workers", "2", "--device", "cpu",
            "--out", out, "--quiet"]
    return argv + (["--labels", labels] if labels else [])


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory, teacher_file):
    root = tmp_path_factory.mktemp("run")
    images = str(root / "images")
    good, labels_csv, bad = write_digit_folder(images, TRAIN)
    out = str(root / "out")
    assert cli.main(fit_argv(images, out, teacher_file, labels=labels_csv)) == 0
    return {"images": images, "good": good, "bad": bad, "out": out, "labels": labels_csv}


def read_clusters(out):
    with open(os.path.join(out, "clusters.csv"), newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_fit_writes_every_output(fitted_run):
    out, good, bad = fitted_run["out"], fitted_run["good"], fitted_run["bad"]
    assert sorted(os.listdir(out)) == [
        "checkpoint", "clusters.csv", "model", "report.html", "run.json", "scan.json",
        "skipped.txt",
    ]
    rows = read_clusters(out)
    assert [row["path"] for row in rows] == good  # every good image, no bad file
    clusters = np.array([int(row["cluster"]) for row in rows])
    distances = np.array([float(row["distance"]) for row in rows])
    assert set(clusters) == set(range(10))
    assert np.isfinite(distances).all() and (distances >= 0).all()

    with open(os.path.join(out, "skipped.txt")) as file:
        skipped = dict(line.rstrip("\n").split("\t", 1) for line in file)
    assert sorted(skipped) == sorted(bad.values())
    assert "truncated" in skipped[bad["truncated"]]
    assert "not an image file PIL can read" in skipped[bad["not_an_image"]]
    assert "not an image file extension" in skipped[bad["other_extension"]]

    run = json.load(open(os.path.join(out, "run.json")))
    assert run["settings"]["K"] == 10
    assert {"checking images", "teacher features", "clustering", "student", "report"} <= set(
        run["seconds"]
    )
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    # sizes, two exemplar grids, probes, training curve, timings
    assert page.count("src='data:image/png;base64,") == 6
    assert "http" not in page.replace("http-equiv", "")  # self-contained
    for text in ("NMI", "ARI", "purity", "linear probe", "kNN probe", "teacher", "student"):
        assert text in page


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_saved_model_matches_the_fit(fitted_run):
    out, good = fitted_run["out"], fitted_run["good"]
    model = skclusterfit.load(os.path.join(out, "model"))
    cf = model.named_steps["clusterfit"]
    rows = read_clusters(out)
    np.testing.assert_array_equal(cf.labels_, [int(row["cluster"]) for row in rows])
    # The distance column is the distance to the centre in the clusterer's space.
    from skclusterfit.cli import cluster_distances

    features = cf.teacher_.transform(ImageFiles(good, mode="RGB", size=(32, 32)))
    expected = cluster_distances(cf.clusterer_, features, cf.labels_, cf.cluster_centers_)
    np.testing.assert_allclose([float(r["distance"]) for r in rows], expected, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_transform_new_images_matches_clusterfit_transform(fitted_run, tmp_path):
    new_folder = str(tmp_path / "new")
    new_paths, _, _ = write_digit_folder(new_folder, NEW, bad_files=False)
    model_path = os.path.join(fitted_run["out"], "model")
    features_path = str(tmp_path / "features.npy")
    assert cli.main(["transform", model_path, new_folder, "--out", features_path,
                     "--num-workers", "2", "--quiet"]) == 0
    features = np.load(features_path)
    with open(str(tmp_path / "features.paths.txt")) as file:
        listed = [line.rstrip("\n") for line in file]
    assert listed == new_paths
    model = skclusterfit.load(model_path)
    cf = model.named_steps["clusterfit"]
    reader = model.named_steps["images"]
    expected = cf.transform(ImageFiles(new_paths, **reader.get_params()))
    assert features.shape == (len(NEW), cf.n_features_out_)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.transform(new_paths), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_transform_leaves_out_bad_files_and_lists_them(fitted_run, tmp_path):
    new_folder = str(tmp_path / "new")
    new_paths, _, bad = write_digit_folder(new_folder, NEW[:6])
    features_path = str(tmp_path / "f.npy")
    cli.main(["transform", os.path.join(fitted_run["out"], "model"), new_folder,
              "--out", features_path, "--num-workers", "0", "--quiet"])
    assert np.load(features_path).shape[0] == 6
    assert open(str(tmp_path / "f.paths.txt")).read().split() == new_paths
    assert len(open(str(tmp_path / "f.skipped.txt")).readlines()) == len(bad)


def test_k_larger_than_the_images_is_refused_before_the_teacher(tmp_path, teacher_file,
                                                                 monkeypatch, capsys):
    images = str(tmp_path / "few")
    write_digit_folder(images, range(5), bad_files=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("files decoded before K was checked")

    monkeypatch.setattr("skclusterfit.data.ImageFiles.check_decode", forbidden)
    assert cli.main(fit_argv(images, str(tmp_path / "out"), teacher_file)) == 1
    assert ("skclusterfit fit: error: K=10 clusters need at least as many images, but "
            f"{images!r} has 5 image files.") in capsys.readouterr().err


@pytest.mark.slow
def test_resumed_run_after_a_kill_gives_the_same_clusters(fitted_run, teacher_file, tmp_path):
    out = str(tmp_path / "out")
    argv = fit_argv(fitted_run["images"], out, teacher_file, labels=fitted_run["labels"],
                    epochs=12)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "skclusterfit", *argv], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    student_checkpoint = os.path.join(out, "checkpoint", "student.pt")
    deadline = time.monotonic() + 300
    while not os.path.exists(student_checkpoint) and process.poll() is None:
        assert time.monotonic() < deadline, "the student never started"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(out, "clusters.csv"))  # killed mid-student

    argv.remove("--quiet")
    resumed = subprocess.run([sys.executable, "-m", "skclusterfit", *argv], env=env,
                             capture_output=True, text=True, check=True)
    assert "reusing the image check" in resumed.stdout
    assert "resuming from the cluster assignment" in resumed.stdout
    assert "resuming from epoch" in resumed.stdout
    with open(os.path.join(out, "clusters.csv")) as a, open(
        os.path.join(fitted_run["out"], "clusters.csv")
    ) as b:
        assert a.read() == b.read()


def test_a_torchvision_weights_file_gets_its_own_versions_transforms():
    from skclusterfit.cli._image_folder import IMAGENET_MEAN, reader_settings

    v2 = reader_settings("resnet50", "/models/resnet50-11ad3fa6.pth")
    v1 = reader_settings("resnet50", "/models/resnet50-0676ba61.pth")
    other = reader_settings("resnet50", "/models/my-finetuned.pth")
    assert (v2["size"], v2["crop"]) == (232, 224)
    assert (v1["size"], v1["crop"]) == (256, 224)
    assert (other["size"], other["crop"], other["mean"]) == (256, 224, IMAGENET_MEAN)
    assert reader_settings("resnet50", "/m/x.pth", size=300)["crop"] == 224
    assert reader_settings("resnet50", "IMAGENET1K_V2", crop=200)["size"] == 232


# -- what a new user meets: defaults, refusals in the command's words, clean stops ----------
@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("small") / "images")
    paths, labels_csv, _ = write_digit_folder(folder, range(40), bad_files=False)
    return folder, paths, labels_csv


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_default_K_is_clusterfits_auto_and_a_refused_rerun_speaks_of_out(
        small_folder, teacher_file, tmp_path, capsys):
    folder, paths, _ = small_folder
    out = str(tmp_path / "out")
    argv = ["fit", folder, "--teacher", teacher_file, "--max-epochs", "1", "--num-workers", "0",
            "--device", "cpu", "--out", out, "--quiet"]
    assert cli.parse_args(argv).K == "auto"
    assert cli.main(argv) == 0
    cf = skclusterfit.load(os.path.join(out, "model")).named_steps["clusterfit"]
    # ten times the teacher's 10 classes, capped at the 40 images
    assert (cf.K, cf.K_) == ("auto", 40)
    run = json.load(open(os.path.join(out, "run.json")))
    capsys.readouterr()

    argv[argv.index("--max-epochs") + 1] = "2"
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"skclusterfit fit: error: --out {out!r} holds a checkpoint of a "
                          "fit with other parameters (")
    assert "run with another --out, or delete that folder" in err
    assert "checkpoint_dir" not in err
    assert json.load(open(os.path.join(out, "run.json"))) == run  # the refusal kept it


def test_labels_that_match_no_image_are_refused_and_partial_ones_warned(
        small_folder, teacher_file, tmp_path, monkeypatch, capsys):
    folder, paths, labels_csv = small_folder

    def stop(self, X, y=None):
        raise ValueError("stopped before the fit, as the test wants")

    monkeypatch.setattr("skclusterfit.ClusterFit.fit", stop)
    semicolons = str(tmp_path / "semicolons.csv")
    rows = open(labels_csv).read().splitlines()
    with open(semicolons, "w") as file:
        file.write("\n".join(row.replace(",", ";") for row in rows) + "\n")
    argv = ["fit", folder, "--teacher", teacher_file, "--K", "5", "--num-workers", "0",
            "--out", str(tmp_path / "out"), "--quiet", "--labels", semicolons]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"skclusterfit fit: error: --labels {semicolons!r}: none of its "
                           f"{len(rows)} lines is a path,label row (comma-separated).")
    assert not os.path.exists(tmp_path / "out")  # a failed fit leaves no empty --out

    half = str(tmp_path / "half.csv")
    with open(half, "w") as file:
        file.write("\n".join(rows[: 1 + len(paths) // 2]) + "\n")
    argv[-1] = half
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"skclusterfit fit: warning: --labels {half!r} labels 20 of the 40 "
                      "images; the report compares the clusters with the labels on those only.")
    assert err[1] == "skclusterfit fit: error: stopped before the fit, as the test wants"


def test_a_failed_fit_leaves_no_empty_out_folder(small_folder, teacher_file, tmp_path, capsys):
    folder, _, _ = small_folder
    out = tmp_path / "new" / "out"
    assert cli.main(["fit", folder, "--teacher", teacher_file, "--K", "500", "--out",
                     str(out), "--quiet"]) == 1
    assert "K=500 clusters need at least as many images" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_files_are_written_with_the_users_umask(fitted_run):
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {}
    for folder, _, files in os.walk(fitted_run["out"]):
        for name in files:
            modes[name] = os.stat(os.path.join(folder, name)).st_mode & 0o777
    assert {"model", "clusters.csv", "report.html", "student.pt"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~mask}, modes


def test_ctrl_c_that_kills_dataloader_workers_first_is_one_clean_line(monkeypatch, capsys,
                                                                      small_folder,
                                                                      teacher_file, tmp_path):
    """The main process may see its workers die of the Ctrl-C before its own
    KeyboardInterrupt: the same one line and exit status 130."""

    def interrupted_fit(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            pass  # as inside DataLoader's loop, which then finds its workers gone
        raise RuntimeError("DataLoader worker (pid 12345) exited unexpectedly")

    monkeypatch.setattr("skclusterfit.cli._image_folder.fit_from_args", interrupted_fit)
    folder, _, _ = small_folder
    code = cli.main(["fit", folder, "--teacher", teacher_file, "--out", str(tmp_path / "o")])
    assert code == 130
    assert capsys.readouterr().err == (
        "skclusterfit fit: interrupted; run the same command again to resume.\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it():
    """``nohup skclusterfit fit ...`` or ``skclusterfit fit ... &`` in a script."""
    from skclusterfit.cli._main import _Interrupts

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the fixture restores it
    with _Interrupts() as interrupts:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert not interrupts.received
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_ctrl_c_during_the_import_is_one_clean_line(tmp_path):
    """SIGINT while `python -m skclusterfit` imports torch: one line, exit 130."""
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import os, signal, sys\n"
        "class InterruptTorchImport:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            sys.meta_path.remove(self)\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, InterruptTorchImport())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
    result = subprocess.run([sys.executable, "-m", "skclusterfit", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 130
    assert result.stderr == "skclusterfit: interrupted while starting\n"


# -- the report: what happened, by name ------------------------------------------------------
class _Page:
    """The text of report.html by section (h2 heading), and its tables' rows."""

    def __init__(self, text):
        from html.parser import HTMLParser

        page = self
        self.sections, self.tables = {}, []

        class Parser(HTMLParser):
            def __init__(self):
                super().__init__()
                self.heading, self.in_h2, self.cell, self.row = "top", False, None, None

            def handle_starttag(self, tag, attrs):
                if tag == "h2":
                    self.in_h2, self.heading = True, ""
                elif tag == "table":
                    page.tables.append({"class": dict(attrs).get("class"),
                                        "section": self.heading, "rows": []})
                elif tag == "tr":
                    self.row = []
                    page.tables[-1]["rows"].append(self.row)
                elif tag in ("td", "th"):
                    self.cell = ""

            def handle_endtag(self, tag):
                if tag == "h2":
                    self.in_h2 = False
                elif tag in ("td", "th") and self.cell is not None:
                    self.row.append(self.cell)
                    self.cell = None

            def handle_data(self, data):
                if self.in_h2:
                    self.heading += data
                    return
                page.sections[self.heading] = page.sections.get(self.heading, "") + data
                if self.cell is not None:
                    self.cell += data

        Parser().feed(text)

    def table(self, section, css_class=None):
        return [t["rows"] for t in self.tables
                if t["section"] == section and (css_class is None or t["class"] == css_class)]


@pytest.fixture(scope="module")
def report(fitted_run):
    return _Page(open(os.path.join(fitted_run["out"], "report.html"), encoding="utf-8").read())


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_report_lists_the_skipped_files_by_name_with_reasons(report, fitted_run):
    (rows,) = report.table("Files left out")
    listed = dict(rows[1:])
    assert sorted(listed) == sorted(fitted_run["bad"].values())
    assert "truncated" in listed[fitted_run["bad"]["truncated"]]
    assert "not an image file extension" in listed[fitted_run["bad"]["other_extension"]]


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_report_names_the_file_of_every_exemplar(report, fitted_run):
    clusters = {row["path"]: int(row["cluster"]) for row in read_clusters(fitted_run["out"])}
    grids = report.table("Exemplars", "exemplar-files")
    assert len(grids) == 2  # under the random sample and under the most mixed clusters
    root = fitted_run["images"]
    for grid in grids:
        for row_id, names in grid:
            names = names.split(" · ")
            assert 1 <= len(names) <= 8
            for name in names:
                assert clusters[os.path.join(root, name)] == int(row_id.lstrip("#"))


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_report_gives_the_command_settings_teacher_file_and_wall_time(report, fitted_run,
                                                                      teacher_file):
    settings = dict(report.table("The run")[0][1:])
    assert settings["command"].startswith("skclusterfit fit ")
    assert f"--out {fitted_run['out']}" in settings["command"]
    assert settings["teacher"] == teacher_file
    assert settings["K"] == "10" and settings["max_epochs"] == "2"
    run = json.load(open(os.path.join(fitted_run["out"], "run.json")))
    assert run["command"] == settings["command"]
    assert run["wall_seconds"] >= sum(v for k, v in run["seconds"].items() if k != "report")
    assert re.search(r"\d+ swall time of the run", report.sections["top"])


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_report_explains_a_student_that_probes_below_its_teacher(report):
    (probes,) = [t for t in report.table("Against the labels") if t[0][0] == "network"]
    scores = {row[0]: (float(row[1]), float(row[2])) for row in probes[1:]}
    below = any(s < t for s, t in zip(scores["student"], scores["teacher"]))
    text = report.sections["Against the labels"]
    assert ("The student's features score below the teacher's" in text) == below

    from skclusterfit.cli._report import _student_below_teacher

    caveat = _student_below_teacher(
        {"teacher": {"linear": 0.882, "kNN": 0.8}, "student": {"linear": 0.731, "kNN": 0.85}},
        n_images=313, n_epochs=10, K=100)
    assert "linear probe 0.731 against 0.882" in caveat and "kNN" not in caveat.split(")")[0]
    for advice in ("10 epochs on 313 images", "--max-epochs", "more images", "--K", "noise_fit"):
        assert advice in caveat
    assert _student_below_teacher({"teacher": {"linear": 0.8}, "student": {"linear": 0.9}},
                                  n_images=10, n_epochs=1, K=2) == ""


def test_probe_legend_covers_no_bar():
    from skclusterfit.cli import probe_figure

    fig = probe_figure({"teacher": {"linear": 0.99, "kNN": 0.97},
                        "student": {"linear": 0.98, "kNN": 0.99}})
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent()
    for bar in ax.patches:
        assert not legend.overlaps(bar.get_window_extent())


@pytest.mark.parametrize("sizes", [[12, 15, 30, 40], [1, 3, 900, 5000], [7, 7, 8]])
def test_cluster_size_log_axis_has_plain_labels(sizes):
    from skclusterfit.cli import cluster_size_figure

    labels = np.repeat(np.arange(len(sizes)), sizes)
    fig = cluster_size_figure(labels)
    fig.canvas.draw()
    right = fig.axes[1]
    low, high = right.get_ylim()
    shown = [t for t in right.yaxis.get_ticklabels() if t.get_text()
             and low <= t.get_position()[1] <= high]
    assert len(shown) >= 2
    for tick in shown:
        assert re.fullmatch(r"\d+(\.\d+)?", tick.get_text()), tick.get_text()
        assert float(tick.get_text()) == pytest.approx(tick.get_position()[1])
    ranks = [t.get_text() for t in right.xaxis.get_ticklabels() if t.get_text()]
    assert ranks and all(re.fullmatch(r"[−-]?\d+", r) for r in ranks), ranks  # whole ranks


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["scan", "student"])
def test_ctrl_c_on_the_process_group_is_one_line(fitted_run, teacher_file, tmp_path, moment):
    """Ctrl-C in a terminal signals the whole process group, DataLoader workers too."""
    out = str(tmp_path / "out")
    argv = fit_argv(fitted_run["images"], out, teacher_file, epochs=30)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "skclusterfit", *argv], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    marker = os.path.join(out, "checkpoint", "student.pt") if moment == "student" else out
    deadline = time.monotonic() + 300
    while not os.path.exists(marker) and process.poll() is None:
        assert time.monotonic() < deadline, f"the {moment} never started"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr == "skclusterfit fit: interrupted; run the same command again to resume.\n"


@pytest.mark.slow
def test_refit_on_a_folder_with_added_images_keeps_cluster_ids(teacher_file, tmp_path):
    images, out = str(tmp_path / "images"), str(tmp_path / "out")
    write_digit_folder(images, TRAIN, bad_files=False)
    assert cli.main(fit_argv(images, out, teacher_file)) == 0
    before = {row["path"]: int(row["cluster"]) for row in read_clusters(out)}
    write_digit_folder(images, TRAIN + NEW, bad_files=False)  # 10% more images
    assert cli.main(fit_argv(images, out, teacher_file)) == 0
    after = {row["path"]: int(row["cluster"]) for row in read_clusters(out)}
    assert len(after) == len(before) + len(NEW)
    old = np.array(list(before.values()))
    new = np.array([after[p] for p in before])
    kept = np.mean(new == old)
    # The best renumbering there is (what is left is k-means moving its
    # clusters on 10% more data, with a weak teacher), and far above chance.
    from skclusterfit.cluster import match_cluster_ids

    np.testing.assert_array_equal(match_cluster_ids(old, new, on="labels"), np.arange(10))
    assert kept > 0.5
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert (f"({len(before):,} images then, {len(after):,} now: {len(NEW)} added, 0 gone)"
            in page)
    assert f"{round(kept * len(before)):,} of the {len(before):,} images in both fits" in page
    # The same images again: a rerun of the refit, which resumes it.
    assert cli.main(fit_argv(images, out, teacher_file)) == 0
    assert {row["path"]: int(row["cluster"]) for row in read_clusters(out)} == after
    assert "images then" in open(os.path.join(out, "report.html"), encoding="utf-8").read()


def test_a_forked_worker_lets_ctrl_c_pass_and_prints_nothing():
    """A DataLoader worker forked under the command's handler ignores Ctrl-C.

    Ctrl-C reaches the whole process group. A worker that raised it before
    torch's worker loop catches it (in multiprocessing's bootstrap, or in
    Python's at-fork callback) printed a traceback into the user's terminal
    and exited 1, which the main process then reported as a crashed worker.
    The main process answers for the interrupt and stops its workers.
    """
    from skclusterfit.cli._main import _Interrupts

    read_end, write_end = os.pipe()
    with _Interrupts() as interrupts:
        pid = os.fork()
        if pid == 0:  # the worker, as multiprocessing's bootstrap runs it
            code = 3
            try:
                sys.stderr = os.fdopen(write_end, "w")
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs between these bytecodes
                    time.sleep(0.001)
                code = 0
            except BaseException as exc:
                print(type(exc).__name__, file=sys.stderr)
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        assert not interrupts.received  # the worker's signal is not the command's
    with os.fdopen(read_end) as child_stderr:
        printed = child_stderr.read()
    assert (os.waitstatus_to_exitcode(status), printed) == (0, "")
