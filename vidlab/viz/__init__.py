"""Plots: functions that take tensors or tables and return a matplotlib Figure (no plt.show, no global state)."""
from .plots import frame_strip, plot_curve_with_ci, plot_frame_metrics
