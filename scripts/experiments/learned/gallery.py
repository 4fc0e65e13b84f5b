"""Extra registered works for eval.py: procedural pictures (benchmarks/scale.py's `art`, seeds no scale run
registers), never trained on. Runs in the project's venv (no torch).

    gallery.py WORK [N=20000]   -> WORK/gallery.npy (uint8 (N, 128, 128, 3), squashed as common.to_source)"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from scale import art  # noqa: E402

n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
np.save(f"{sys.argv[1]}/gallery.npy",
        np.stack([np.asarray(art(7_000_000 + i).resize((128, 128), Image.BILINEAR)) for i in range(n)]))
