"""SIMU: Selective Influence Machine Unlearning (arXiv 2510.07822)."""
