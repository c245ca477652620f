"""sal3d as a Python library: saliency maps in memory, and each stage of the command line as a function.

    import sal3d

    predictor = sal3d.load("run/best.pt")                    # trunk weights named by the checkpoint
    for saliency in predictor.predict_video("clip.mp4"):     # float32 (H, W) in [0, 1], frame by frame
        ...

    sal3d.extract("DHF1K", "dhf1k.zarr")                      # = sal3d extract DHF1K dhf1k.zarr
    sal3d.train_decoder("dhf1k.zarr", "run", max_steps=100)   # = sal3d train-decoder ... --max-steps 100
    sal3d.predict("dhf1k.zarr", "run/best.pt", "maps", split="val")
    scores = sal3d.evaluate("maps", "DHF1K", split="val")     # the dict `--json` writes
    board = sal3d.compare("DHF1K", {"mine": "maps", "other": "their_maps"}, split="val")

The stage functions take the command's options as keyword arguments, named like the options
(``--max-steps`` -> ``max_steps``), and return what the command reports. Expected failures raise
`Sal3dError` (its subclasses name the file and the reason).
"""

from importlib.metadata import PackageNotFoundError, version

from sal3d.api import Predictor, compare, evaluate, extract, import_keras, info, load, predict, train_decoder
from sal3d.pipeline.errors import Sal3dError

try:
    __version__ = version("sal3d")
except PackageNotFoundError:  # imported from a tree that was not installed
    __version__ = "0+unknown"

__all__ = ["Predictor", "Sal3dError", "__version__", "compare", "evaluate", "extract", "import_keras", "info", "load", "predict",
           "train_decoder"]
