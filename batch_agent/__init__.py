"""kaggle-solver's agent: understands a competition, trains models, writes submission.csv.

Importing this package must stay cheap: Lambda steps import parts of it, so no
module imported here pulls in pandas, numpy, scikit-learn or LightGBM.
"""

__version__ = "0.1.0"
