"""OmniSat: a faithful, readable re-implementation of the reference model (gastruc/OmniSat @ 9c36c70).

    from omnisat_model import OmniSatPretraining, OmniSatClassifier, preset
    model = OmniSatPretraining(preset("treesatai-ts"))
    out = model(batch, noise=noise)          # out.loss, out.losses, out.mask, out.fused, ...

Numbers equal the reference code's (tests/test_model_conformance.py); see README "Model".
"""

from .config import OmniSatConfig, SeriesConfig, VhrConfig, preset
from .model import OmniSatClassifier, OmniSatPretraining

__version__ = "0.1.0"

__all__ = ["OmniSatConfig", "SeriesConfig", "VhrConfig", "preset", "OmniSatPretraining", "OmniSatClassifier",
           "__version__"]
