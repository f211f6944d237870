"""The reading order of the gallery examples within each section.

Used by ``sphinx_gallery_conf["within_subsection_order"]`` in conf.py (by
name, so that the configuration stays picklable for parallel builds).
Examples not listed come after the listed ones, by file name.
"""

ORDER = [
    # getting_started
    "plot_grid_search_k.py",
    "plot_frozen_pipeline.py",
    # paper
    "plot_label_noise.py",
    "plot_long_tail_curation.py",
    "plot_rotnet_teacher.py",
    "plot_layerwise_probe.py",
    "plot_video_clusterfit.py",
    # clustering
    "plot_cluster_gallery.py",
    "plot_swap_clusterer.py",
    "plot_feature_preprocessing.py",
    # scaling
    "torchrun_fit.py",
    "plot_torchrun.py",
    # practical
    "plot_torchvision_teacher.py",
    "plot_resume_and_save.py",
    "plot_large_k.py",
    # real_world
    "plot_image_folder_cli.py",
    "resnet50_image_folder.py",
    "gpu_run.py",
]


class ExplicitFileOrder:
    """Sort key: position in ``ORDER``, then file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        position = ORDER.index(filename) if filename in ORDER else len(ORDER)
        return position, filename

    def __repr__(self):
        return f"<{type(self).__name__}>"
