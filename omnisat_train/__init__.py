"""Training, data loading and evaluation of OmniSat (the network itself is omnisat_model)."""
