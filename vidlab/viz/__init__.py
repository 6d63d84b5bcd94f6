"""Plots: functions that take tensors or tables and return a matplotlib Figure (no plt.show, no global state).
The notebooks' controls (widgets for a run's parameters, a Run button, a progress bar) are in `vidlab.viz.controls`."""
from .plots import frame_strip, plot_curve_with_ci, plot_frame_metrics
from .attention import (AttentionExplorer, animate_overlay, normalize_heat, overlay_heat, plot_frame_attention,
                        plot_word_heatmaps, plot_word_strip, save_animation)
