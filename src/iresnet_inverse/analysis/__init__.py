"""Analyses of trained networks: metrics, directional derivatives, saliency, clustering, edges."""
