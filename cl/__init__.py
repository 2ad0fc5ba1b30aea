"""Contrastive Explorer core library: data, augmentations, encoders, losses, training, evaluation.

Plain PyTorch, torchvision, scikit-learn and NumPy. Never imports Streamlit.
"""

__version__ = "0.1.0"
