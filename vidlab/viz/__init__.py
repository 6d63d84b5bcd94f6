"""Plots: functions that take tensors or tables and return a matplotlib Figure (no plt.show, no global state);
the notebooks' controls (`controls`: widgets for a run's parameters, a Run button, a progress bar)."""
from .plots import frame_strip, plot_curve_with_ci, plot_frame_metrics
from .attention import (AttentionExplorer, animate_overlay, normalize_heat, overlay_heat, plot_frame_attention,
                        plot_word_heatmaps, plot_word_strip, save_animation)
from .controls import Controls, controls, point_video
