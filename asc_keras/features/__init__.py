"""Log-mel features: the NumPy extractor, the Keras layer, the atomic memory-mapped cache, simulated devices."""
