import io

from skclusterfit.cli import build_parser, run


def test_main_job_prints_the_table():
    args = build_parser().parse_args(
        ["--K", "20", "--teacher-epochs", "3", "--student-epochs", "2", "--noise", "0.5"]
    )
    out = io.StringIO()
    results = run(args, out=out)
    text = out.getvalue()
    assert "N_pre" in text and "N_cf" in text and "linear-probe accuracy" in text
    assert 0.1 < results["N_pre"] <= 1 and 0.1 < results["N_cf"] <= 1
