"""OmniSat: a faithful, readable re-implementation of the reference model (see issue: omnisat_model)."""

__version__ = "0.1.0"
