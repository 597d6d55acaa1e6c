"""The threat detector's training tools (development only, never loaded by `serve`).

`python -m evals.detector.corpus` (`make corpus`) builds the training corpus from named public
sources and `python -m evals.detector.train` (`make train-detector`) fits the learned layers
with scikit-learn; both write into guards/data/, where `guards.learned` and `guards.semantic`
read the shipped JSON weights at run time without scikit-learn.
"""

from pathlib import Path

GUARDS_DATA = Path(__file__).resolve().parent.parent.parent / "guards" / "data"
"""Where the corpus, its provenance and the shipped weights live (guards/data/)."""
