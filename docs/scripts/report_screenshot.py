"""Render the gallery example's report.html in headless Chromium (docs/_static).

    python docs/scripts/report_screenshot.py [--chromium /usr/bin/chromium]

Runs examples/real_world/plot_image_folder_cli.py (which writes a folder of
digit PNGs and runs ``skclusterfit fit`` on it), then takes a screenshot of
its ``report.html`` with Debian's ``chromium`` package (``apt-get install
chromium``), with no network and no GPU.
"""

import argparse
import os
import runpy
import subprocess

import matplotlib

matplotlib.use("Agg")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--size", default="1100,2500", help="window width,height in pixels")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "_static",
                                                      "report_screenshot.png"))
    args = parser.parse_args()
    example = runpy.run_path(
        os.path.join(REPO, "examples", "real_world", "plot_image_folder_cli.py"))
    report = os.path.join(example["out"], "report.html")
    subprocess.run(
        [args.chromium, *FLAGS, f"--window-size={args.size}",
         f"--screenshot={os.path.abspath(args.out)}", "file://" + report],
        check=True, capture_output=True,
    )
    print(f"{report} -> {args.out}")


if __name__ == "__main__":
    main()
