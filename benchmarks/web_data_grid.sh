#!/bin/bash
# The structured-noise grid of benchmarks/web_data_study.py in order of
# priority (each line resumes: finished rows are skipped), then the long tails.
# Run from the repository root. Two lanes run side by side, one process each,
# on disjoint work (so no run is done twice): the digits and MNIST-5k, then
# two lanes of MNIST split by p.
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
}
# MNIST 28x28 and the baselines on MNIST: two lanes split by p, then by the
# kind of noise (a 28x28 network takes about 150 CPU-seconds); Distill at
# every p before N_pre 2x, and N_pre 2x at p = 0.5 first.
mnist_lane_a() {
    run --plan structured --datasets mnist28 --noise 0.75 --networks N_cf
    for p in 0.5 0.75; do run --plan structured --datasets mnist14 --noise $p --networks Distill "N_pre 2x"; done
    run --plan structured --datasets mnist28 --noise 0.5 --networks Distill
    for p in 0.5 0.25 0.75; do
        run --plan structured --datasets mnist28 --noise $p --kinds uniform --networks "N_pre 2x"
    done
}
mnist_lane_b() {
    run --plan structured --datasets mnist28 --noise 0.25 --networks N_cf
    run --plan structured --datasets mnist14 --noise 0.25 --networks Distill "N_pre 2x"
    for p in 0.25 0.75; do run --plan structured --datasets mnist28 --noise $p --networks Distill; done
    for p in 0.5 0.25 0.75; do
        run --plan structured --datasets mnist28 --noise $p --kinds structured --networks "N_pre 2x"
    done
}
case "$1" in
    digits) digits_lane ;;
    mnist) mnist_lane ;;
    mnist28) mnist_lane_a & mnist_lane_b; wait ;;
    *) digits_lane & mnist_lane; wait; mnist_lane_a & mnist_lane_b; wait ;;
esac
