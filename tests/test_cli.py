"""The command line: option checks before any work, the demo, and fit/transform on image files."""

import csv
import io
import json
import os
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
    ],
)
def test_bad_options_are_refused_before_any_work(argv, message, no_work, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


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
    assert vars(old) == vars(new)
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
    assert "(default: 16000)" in text and "--num-workers" in text and "--labels" in text
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
