#!/bin/bash
# The structured-noise grid of benchmarks/web_data_study.py in order of
# priority (each line resumes: finished rows are skipped), then the long tails.
# Run from the repository root; one process per plan (at most 2 at once),
# nice 19 and one thread: they measure accuracy, not time.
export OMP_NUM_THREADS=1
run() { nice -n 19 python benchmarks/web_data_study.py --n-jobs 1 "$@"; }
if [ "$1" = longtail ]; then
    run --plan longtail
    exit
fi
# First the teacher and ClusterFit (does its lead survive?), then the baselines.
for p in 0.5 0.75 0.25; do run --plan structured --datasets digits8 --noise $p --networks N_cf; done
run --plan structured --datasets digits8 --noise 0.5 --networks Distill "N_pre 2x"
for p in 0.5 0.75 0.25; do run --plan structured --datasets digits16 --noise $p --networks N_cf; done
run --plan structured --datasets digits8 --networks Distill "N_pre 2x"
run --plan structured --datasets mnist14 --noise 0.5
run --plan structured --datasets mnist28 --noise 0.5
run --plan structured --datasets mnist14
run --plan structured --datasets mnist28
