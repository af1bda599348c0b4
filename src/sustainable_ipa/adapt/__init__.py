"""Energy- and carbon-aware adaptation: IPA's optimiser with energy, solved exactly, replayed over traces."""
