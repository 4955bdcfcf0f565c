"""The surrogate: ECFP fingerprints -> fully connected network, trained as a calibrated k-fold ensemble."""
