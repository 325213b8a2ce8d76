"""semievol: semi-supervised fine-tuning of large language models, after SemiEvol (arXiv 2410.14745)."""

__version__ = "0.1.0"
