"""Reports: does energy change which configuration is best? Plots, statistics and an offline HTML page."""
