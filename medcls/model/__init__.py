"""The classifier: network, training input, calibration, training and evaluation."""
