"""The soak test's long run, plotted."""
