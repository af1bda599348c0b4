"""Every metric the run record holds, each defined once."""
