"""SS4Rec on MovieLens: data, models, training and evaluation."""

__version__ = "0.1.0"
