#!/bin/bash
# The structured-noise grid of benchmarks/web_data_study.py in order of
# priority (each line resumes: finished rows are skipped), then the long tails.
# Run from the repository root. Two lanes run side by side, one process each,
# on disjoint datasets (so no run is done twice): the digits and MNIST-5k.
# nice 19 and one thread: they measure accuracy, not time.
export OMP_NUM_THREADS=1
run() { nice -n 19 python benchmarks/web_data_study.py --n-jobs 1 "$@"; }
if [ "$1" = longtail ]; then
    run --plan longtail
    exit
fi
digits_lane() {
    # First the teacher and ClusterFit (does its lead survive?), then the baselines.
    for p in 0.5 0.75 0.25; do run --plan structured --datasets digits8 --noise $p --networks N_cf; done
    for p in 0.5 0.75 0.25; do run --plan structured --datasets digits16 --noise $p --networks N_cf; done
    run --plan structured --datasets digits8 --networks Distill "N_pre 2x"
    run --plan structured --datasets digits16 --networks Distill "N_pre 2x"
}
mnist_lane() {
    run --plan structured --datasets mnist14 --noise 0.5 --networks N_cf
    run --plan structured --datasets mnist28 --noise 0.5 --networks N_cf
    for p in 0.75 0.25; do run --plan structured --datasets mnist14 --noise $p --networks N_cf; done
    for p in 0.75 0.25; do run --plan structured --datasets mnist28 --noise $p --networks N_cf; done
    run --plan structured --datasets mnist14 --networks Distill "N_pre 2x"
    run --plan structured --datasets mnist28 --networks Distill "N_pre 2x"
}
case "$1" in
    digits) digits_lane ;;
    mnist) mnist_lane ;;
    *) digits_lane & mnist_lane; wait ;;
esac
